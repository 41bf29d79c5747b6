/* The SDK tests' enclave: one ecall per runtime feature under test. */
#include "vsgx/enclave.h"

static const char *const words[] = {"alpha", "be", "gamma"};   /* needs relocation */

VSGX_ECALL(add)(uint64_t a, uint64_t b) { return a + b; }

VSGX_ECALL(sum6)(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e, uint64_t f)
{
    return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f;
}

VSGX_ECALL(word_length)(uint64_t i) { return i < 3 ? strlen(words[i]) : (uint64_t)-1; }

/* Reverse an untrusted buffer in place: copy in, work inside, copy out. */
VSGX_ECALL(reverse)(uint8_t *buf, uint64_t n)
{
    uint8_t tmp[256];
    if (n > sizeof tmp || vsgx_copy_from_untrusted(tmp, buf, n))
        return 1;
    for (uint64_t i = 0; i < n / 2; i++) {
        uint8_t t = tmp[i];
        tmp[i] = tmp[n - 1 - i];
        tmp[n - 1 - i] = t;
    }
    return vsgx_copy_to_untrusted(buf, tmp, n) ? 2 : 0;
}

/* Refuses a pointer into the enclave itself. */
VSGX_ECALL(copy_in)(const uint8_t *src, uint64_t n)
{
    uint8_t tmp[64];
    return n <= sizeof tmp ? (uint64_t)vsgx_copy_from_untrusted(tmp, src, n) : 99;
}

VSGX_ECALL(self_address)(void) { return (uint64_t)words; }

/* Ocall "twice" with an argument, add one to what comes back; report the status on failure. */
VSGX_ECALL(call_out)(uint64_t x)
{
    uint64_t ret = 0, args[1] = {x};
    int status = vsgx_ocall("twice", &ret, args, 1);
    return status ? 0x1000 + (uint64_t)status : ret + 1;
}

VSGX_ECALL(call_unknown)(void)
{
    uint64_t ret = 0;
    return 0x1000 + (uint64_t)vsgx_ocall("no-such-ocall", &ret, 0, 0);
}

/* Hand a string to the untrusted side through ocall scratch. */
VSGX_ECALL(say)(void)
{
    static const char text[] = "from inside";
    char *out = vsgx_ocall_alloc(sizeof text);
    if (!out)
        return 1;
    memcpy(out, text, sizeof text);
    uint64_t args[2] = {(uint64_t)out, sizeof text - 1};
    return (uint64_t)vsgx_ocall("show", 0, args, 2);
}

/* An ocall whose handler calls back into the enclave (another TCS). */
VSGX_ECALL(reenter)(uint64_t x)
{
    uint64_t ret = 0, args[1] = {x};
    return vsgx_ocall("nested", &ret, args, 1) ? (uint64_t)-1 : ret;
}

VSGX_ECALL(read_at)(uint64_t addr) { return *(volatile uint64_t *)addr; }

VSGX_ECALL(heap)(uint64_t n)
{
    uint64_t total = 0;
    uint8_t *blocks[16];
    for (int i = 0; i < 16; i++) {
        blocks[i] = vsgx_malloc(n + (uint64_t)i);
        if (!blocks[i])
            return (uint64_t)-1;
        memset(blocks[i], i, n + (uint64_t)i);
    }
    for (int i = 0; i < 16; i += 2)
        vsgx_free(blocks[i]);
    for (int i = 1; i < 16; i += 2) {
        total += blocks[i][n];
        vsgx_free(blocks[i]);
    }
    uint8_t *big = vsgx_malloc(16 * n);   /* fits again once the blocks coalesced */
    vsgx_free(big);
    return big ? total : (uint64_t)-2;
}

/* MRENCLAVE as EREPORT reports it (what EINIT computed). */
VSGX_ECALL(mrenclave)(uint8_t *out)
{
    sgx_report report;
    if (vsgx_report(0, 0, &report))
        return 1;
    return (uint64_t)vsgx_copy_to_untrusted(out, report.body.mrenclave, 32);
}

VSGX_ECALL(thread_index)(void) { return vsgx_thread_index(); }

/* Seal n bytes of heap data inside the enclave (the sealing benchmark's unit of work). */
VSGX_ECALL(seal_heap)(uint64_t n, uint64_t rounds)
{
    size_t size = vsgx_sealed_size(0, n);
    uint8_t *text = vsgx_malloc(n), *sealed = vsgx_malloc(size);
    int status = text && sealed ? 0 : -1;
    if (text)
        memset(text, 0x5a, n);
    for (uint64_t i = 0; i < rounds && status == 0; i++)
        status = vsgx_seal(VSGX_KEYPOLICY_MRENCLAVE, 0, 0, text, n, sealed, size);
    vsgx_free(text);
    vsgx_free(sealed);
    return (uint64_t)status;
}

/* One ocall per call: the ocall round-trip benchmark. */
VSGX_ECALL(ping_out)(uint64_t x)
{
    uint64_t ret = 0, args[1] = {x};
    return vsgx_ocall("ping", &ret, args, 1) ? (uint64_t)-1 : ret;
}

/* Spin until the untrusted flag turns non-zero: an ecall that is in progress until told. */
VSGX_ECALL(spin_until)(volatile const uint64_t *flag)
{
    uint64_t rounds = 0;
    while (!*flag)
        rounds++;
    return rounds;
}
