/*
 * AES-128-CMAC (NIST SP 800-38B, RFC 4493) for the vsgx trusted runtime.
 */
#include <stddef.h>
#include <stdint.h>

#include "aes_internal.h"

/* Doubling in GF(2^128) with the CMAC polynomial: out = in << 1, XOR 0x87 on carry-out. */
static void cmac_double(uint8_t out[16], const uint8_t in[16])
{
    uint8_t carry = (uint8_t)(in[0] >> 7);
    for (int i = 0; i < 15; i++)
        out[i] = (uint8_t)((in[i] << 1) | (in[i + 1] >> 7));
    /* Branch-free: the mask is 0x87 when the top bit was set, 0 otherwise. */
    out[15] = (uint8_t)((in[15] << 1) ^ (0x87 & (0u - carry)));
}

void vsgx_aes128_cmac(const uint8_t key[16], const void *msg, size_t len, uint8_t mac[16])
{
    vsgx_aes128_key ks;
    uint8_t k[16], x[16], last[16];
    const uint8_t *m = (const uint8_t *)msg;

    vsgx_aes128_init(&ks, key);

    /* Subkeys: L = E(K, 0); K1 = 2L; K2 = 4L (computed into k as needed). */
    __builtin_memset(k, 0, 16);
    vsgx_aes128_encrypt_block(&ks, k, k);
    cmac_double(k, k);

    /* Every complete block except the last one goes through the plain CBC chain. */
    __builtin_memset(x, 0, 16);
    while (len > 16) {
        vsgx_xor16(x, x, m);
        vsgx_aes128_encrypt_block(&ks, x, x);
        m += 16;
        len -= 16;
    }

    if (len == 16) {
        vsgx_xor16(last, m, k);                 /* complete final block: M_n ^ K1 */
    } else {
        cmac_double(k, k);                      /* K2 */
        __builtin_memset(last, 0, 16);
        if (len)
            __builtin_memcpy(last, m, len);
        last[len] = 0x80;                       /* 10* padding */
        vsgx_xor16(last, last, k);
    }
    vsgx_xor16(x, x, last);
    vsgx_aes128_encrypt_block(&ks, x, x);
    __builtin_memcpy(mac, x, 16);

    vsgx_wipe(&ks, sizeof ks);
    vsgx_wipe(k, sizeof k);
    vsgx_wipe(x, sizeof x);
    vsgx_wipe(last, sizeof last);
}
