/*
 * AES-128-GCM (NIST SP 800-38D) for the vsgx trusted runtime, and the constant-time comparison
 * it verifies tags with.
 *
 * GHASH uses Shoup's 4-bit method: per key, a 16-entry table of the multiples of H by every
 * 4-bit polynomial (256 bytes), so one multiplication by H is 32 table lookups, shifts and XORs,
 * with a const 16-entry table folding the four bits shifted out back in (reduction modulo
 * x^128 + x^7 + x^2 + x + 1 in GCM's reflected bit order). Field elements are held as two
 * 64-bit halves of the big-endian block.
 *
 * Everything lives in a gcm_state on the caller's stack and is wiped before returning.
 */
#include <stddef.h>
#include <stdint.h>

#include "aes_internal.h"

typedef struct {
    uint64_t hi, lo;
} gcm_u128;

typedef struct {
    vsgx_aes128_key ks;
    gcm_u128 htable[16];    /* htable[n] = n(x) * H for the 4-bit polynomial n */
    gcm_u128 x;             /* GHASH accumulator */
    uint8_t j0[16];         /* pre-counter block */
} gcm_state;

/* SP 800-38D bounds: plaintext at most 2^39 - 256 bits; IV and AAD bit lengths below 2^64. */
#define GCM_MAX_TEXT ((UINT64_C(1) << 36) - 32)
#define GCM_MAX_LEN_BYTES (UINT64_C(1) << 61)

/* The reduction of the 4 bits shifted out of the low end, pre-placed in the top 16 bits. */
static const uint64_t gcm_rem_4bit[16] = {
    UINT64_C(0x0000) << 48, UINT64_C(0x1C20) << 48, UINT64_C(0x3840) << 48,
    UINT64_C(0x2460) << 48, UINT64_C(0x7080) << 48, UINT64_C(0x6CA0) << 48,
    UINT64_C(0x48C0) << 48, UINT64_C(0x54E0) << 48, UINT64_C(0xE100) << 48,
    UINT64_C(0xFD20) << 48, UINT64_C(0xD940) << 48, UINT64_C(0xC560) << 48,
    UINT64_C(0x9180) << 48, UINT64_C(0x8DA0) << 48, UINT64_C(0xA9C0) << 48,
    UINT64_C(0xB5E0) << 48,
};

static void ghash_init_table(gcm_u128 htable[16], const uint8_t h[16])
{
    gcm_u128 v = {vsgx_load_be64(h), vsgx_load_be64(h + 8)};

    htable[0].hi = 0;
    htable[0].lo = 0;
    htable[8] = v;
    /* htable[4], [2], [1]: successive multiplications by x (a right shift in GCM bit order). */
    for (int i = 4; i > 0; i >>= 1) {
        uint64_t t = UINT64_C(0xE100000000000000) & (0 - (v.lo & 1));
        v.lo = (v.hi << 63) | (v.lo >> 1);
        v.hi = (v.hi >> 1) ^ t;
        htable[i] = v;
    }
    /* The rest by linearity. */
    for (int i = 2; i < 16; i <<= 1) {
        for (int j = 1; j < i; j++) {
            htable[i + j].hi = htable[i].hi ^ htable[j].hi;
            htable[i + j].lo = htable[i].lo ^ htable[j].lo;
        }
    }
}

/* One 4-bit step: z = z * x^4 (reduced) ^ htable[n]. */
#define GHASH_STEP(n)                                             \
    do {                                                          \
        uint64_t rem_ = zlo & 0xf;                                \
        zlo = (zhi << 60) | (zlo >> 4);                           \
        zhi = (zhi >> 4) ^ gcm_rem_4bit[rem_] ^ ht[(n)].hi;       \
        zlo ^= ht[(n)].lo;                                        \
    } while (0)

/* st->x = st->x * H, consuming the nibbles of x from the least significant end. */
static void ghash_mult(gcm_state *st)
{
    const gcm_u128 *ht = st->htable;
    uint64_t xlo = st->x.lo, xhi = st->x.hi;
    uint64_t zhi, zlo;

    zhi = ht[xlo & 0xf].hi;
    zlo = ht[xlo & 0xf].lo;
    for (int i = 1; i < 16; i++) {
        xlo >>= 4;
        GHASH_STEP(xlo & 0xf);
    }
    for (int i = 0; i < 16; i++, xhi >>= 4)
        GHASH_STEP(xhi & 0xf);
    st->x.hi = zhi;
    st->x.lo = zlo;
}

/* Absorbs len bytes into GHASH, zero-padding a final partial block. */
static void ghash_update(gcm_state *st, const uint8_t *p, size_t len)
{
    for (; len >= 16; p += 16, len -= 16) {
        st->x.hi ^= vsgx_load_be64(p);
        st->x.lo ^= vsgx_load_be64(p + 8);
        ghash_mult(st);
    }
    if (len) {
        uint8_t block[16] = {0};
        __builtin_memcpy(block, p, len);
        st->x.hi ^= vsgx_load_be64(block);
        st->x.lo ^= vsgx_load_be64(block + 8);
        ghash_mult(st);
        vsgx_wipe(block, sizeof block);
    }
}

/* Absorbs the final block [len(A)]_64 || [len(C)]_64 (bit lengths). */
static void ghash_lengths(gcm_state *st, uint64_t a_bytes, uint64_t c_bytes)
{
    st->x.hi ^= a_bytes << 3;
    st->x.lo ^= c_bytes << 3;
    ghash_mult(st);
}

static void gcm_setup(gcm_state *st, const uint8_t key[16], const uint8_t *iv, size_t iv_len)
{
    uint8_t h[16] = {0};

    vsgx_aes128_init(&st->ks, key);
    vsgx_aes128_encrypt_block(&st->ks, h, h);
    ghash_init_table(st->htable, h);
    vsgx_wipe(h, sizeof h);

    st->x.hi = 0;
    st->x.lo = 0;
    if (iv_len == 12) {
        __builtin_memcpy(st->j0, iv, 12);
        vsgx_store_be32(st->j0 + 12, 1);
    } else {
        /* J0 = GHASH_H(IV || 0^(s+64) || [len(IV)]_64) */
        ghash_update(st, iv, iv_len);
        ghash_lengths(st, 0, iv_len);
        vsgx_store_be64(st->j0, st->x.hi);
        vsgx_store_be64(st->j0 + 8, st->x.lo);
        st->x.hi = 0;
        st->x.lo = 0;
    }
}

/* GCTR from inc32(J0): out = in ^ keystream over len bytes; out may equal in. */
static void gcm_ctr(const gcm_state *st, const uint8_t *in, uint8_t *out, size_t len)
{
    uint8_t cb[16], ks[16];
    uint32_t ctr = vsgx_load_be32(st->j0 + 12);

    __builtin_memcpy(cb, st->j0, 12);
    for (; len >= 16; in += 16, out += 16, len -= 16) {
        vsgx_store_be32(cb + 12, ++ctr);
        vsgx_aes128_encrypt_block(&st->ks, cb, ks);
        vsgx_xor16(out, in, ks);
    }
    if (len) {
        vsgx_store_be32(cb + 12, ++ctr);
        vsgx_aes128_encrypt_block(&st->ks, cb, ks);
        for (size_t i = 0; i < len; i++)
            out[i] = (uint8_t)(in[i] ^ ks[i]);
    }
    vsgx_wipe(ks, sizeof ks);
}

/* T = E(K, J0) ^ GHASH(A || C || lengths), the accumulator already holding A and C. */
static void gcm_final(gcm_state *st, size_t aad_len, size_t len, uint8_t tag[16])
{
    uint8_t s[16];

    ghash_lengths(st, aad_len, len);
    vsgx_store_be64(s, st->x.hi);
    vsgx_store_be64(s + 8, st->x.lo);
    vsgx_aes128_encrypt_block(&st->ks, st->j0, tag);
    vsgx_xor16(tag, tag, s);
    vsgx_wipe(s, sizeof s);
}

static int gcm_args_ok(const uint8_t *iv, size_t iv_len, size_t aad_len, size_t len)
{
    return iv != NULL && iv_len != 0 && (uint64_t)iv_len < GCM_MAX_LEN_BYTES &&
           (uint64_t)aad_len < GCM_MAX_LEN_BYTES && (uint64_t)len <= GCM_MAX_TEXT;
}

int vsgx_aes128_gcm_encrypt(const uint8_t key[16], const uint8_t *iv, size_t iv_len,
                            const void *aad, size_t aad_len, const void *pt, size_t len,
                            void *ct, uint8_t tag[16])
{
    gcm_state st;

    if (!gcm_args_ok(iv, iv_len, aad_len, len))
        return -1;
    gcm_setup(&st, key, iv, iv_len);
    ghash_update(&st, (const uint8_t *)aad, aad_len);
    gcm_ctr(&st, (const uint8_t *)pt, (uint8_t *)ct, len);
    ghash_update(&st, (const uint8_t *)ct, len);
    gcm_final(&st, aad_len, len, tag);
    vsgx_wipe(&st, sizeof st);
    return 0;
}

int vsgx_aes128_gcm_decrypt(const uint8_t key[16], const uint8_t *iv, size_t iv_len,
                            const void *aad, size_t aad_len, const void *ct, size_t len,
                            void *pt, const uint8_t tag[16])
{
    gcm_state st;
    uint8_t expected[16];
    int bad;

    if (!gcm_args_ok(iv, iv_len, aad_len, len)) {
        if (pt != NULL && len != 0)
            __builtin_memset(pt, 0, len);
        return -1;
    }
    /* Verify first, so that no plaintext is released for a forged message. */
    gcm_setup(&st, key, iv, iv_len);
    ghash_update(&st, (const uint8_t *)aad, aad_len);
    ghash_update(&st, (const uint8_t *)ct, len);
    gcm_final(&st, aad_len, len, expected);
    bad = vsgx_memequal_ct(expected, tag, 16);
    if (!bad)
        gcm_ctr(&st, (const uint8_t *)ct, (uint8_t *)pt, len);
    else if (len != 0)
        __builtin_memset(pt, 0, len);
    vsgx_wipe(&st, sizeof st);
    vsgx_wipe(expected, sizeof expected);
    return bad ? -1 : 0;
}

int vsgx_memequal_ct(const void *a, const void *b, size_t n)
{
    /* Volatile loads keep the compiler from turning the loop into an early-exit comparison. */
    const volatile uint8_t *pa = (const volatile uint8_t *)a;
    const volatile uint8_t *pb = (const volatile uint8_t *)b;
    uint32_t diff = 0;

    for (size_t i = 0; i < n; i++)
        diff |= (uint32_t)(pa[i] ^ pb[i]);
    /* 0 when diff == 0, 1 otherwise, without a data-dependent branch. */
    return (int)((((diff - 1) >> 8) & 1) ^ 1);
}
