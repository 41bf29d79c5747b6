/* Random numbers inside the enclave: RDRAND, which enclave code may execute (it is not among
 * the instructions SDM Vol. 3D 38.6.1 makes illegal in enclave mode), retried as Intel's DRNG
 * guide recommends when the carry flag reports no number ready. */
#include "vsgx/enclave.h"

#define RDRAND_RETRIES 10

int vsgx_read_rand(void *buf, size_t size)
{
    uint8_t *out = buf;
    for (size_t at = 0; at < size; at += 8) {
        uint64_t value = 0;
        unsigned char ok = 0;
        for (int tries = 0; tries < RDRAND_RETRIES && !ok; tries++)
            __asm__ volatile("rdrand %0; setc %1" : "=r"(value), "=qm"(ok) : : "cc");
        if (!ok)
            return VSGX_ERROR_RANDOM;
        memcpy(out + at, &value, size - at < 8 ? size - at : 8);
        value = 0;
    }
    return 0;
}
