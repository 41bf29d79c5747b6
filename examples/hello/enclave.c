/* The hello sample: values in and out of an enclave.
 *
 * greet: copies an untrusted name into the enclave, builds a greeting there and hands it to
 *        the untrusted side through the "print" ocall; returns what the ocall returned.
 * add:   64-bit arithmetic inside the enclave (wraps modulo 2^64, like the hardware).
 */
#include "vsgx/enclave.h"

#define NAME_MAX 64
#define GREETING_ERROR ((uint64_t)-1)

static size_t append(char *dst, size_t at, const char *src, size_t n)
{
    memcpy(dst + at, src, n);
    return at + n;
}

VSGX_ECALL(greet)(const char *untrusted_name, uint64_t size)
{
    static const char head[] = "Hello, ";
    static const char tail[] = "! (from inside the enclave)";
    char name[NAME_MAX], greeting[sizeof head + NAME_MAX + sizeof tail];

    /* The pointer comes from untrusted code: check the size, then copy the bytes in before
     * looking at them, so the untrusted side cannot change them under our feet. */
    if (size == 0 || size > NAME_MAX || vsgx_copy_from_untrusted(name, untrusted_name, size))
        return GREETING_ERROR;
    size_t length = append(greeting, 0, head, sizeof head - 1);
    length = append(greeting, length, name, size);
    length = append(greeting, length, tail, sizeof tail - 1);

    /* The greeting leaves through untrusted scratch memory that the ocall can read. */
    char *out = vsgx_ocall_alloc(length);
    if (!out)
        return GREETING_ERROR;
    memcpy(out, greeting, length);
    uint64_t printed = 0, args[2] = {(uint64_t)out, length};
    if (vsgx_ocall("print", &printed, args, 2))
        return GREETING_ERROR;
    return printed;   /* the ocall's return value, flowing back in */
}

VSGX_ECALL(add)(uint64_t a, uint64_t b) { return a + b; }
