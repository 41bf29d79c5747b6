/*
 * Helpers shared by the runtime's AES, CMAC and GCM code: big-endian loads and stores, 16-byte
 * block operations and a wipe that the compiler cannot elide. Private to src/.../crypto/.
 */
#ifndef VSGX_CRYPTO_AES_INTERNAL_H
#define VSGX_CRYPTO_AES_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "vsgx/crypto.h"

static inline uint32_t vsgx_load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void vsgx_store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint64_t vsgx_load_be64(const uint8_t *p)
{
    return ((uint64_t)vsgx_load_be32(p) << 32) | vsgx_load_be32(p + 4);
}

static inline void vsgx_store_be64(uint8_t *p, uint64_t v)
{
    vsgx_store_be32(p, (uint32_t)(v >> 32));
    vsgx_store_be32(p + 4, (uint32_t)v);
}

/* dst = a ^ b on 16 bytes; any of the three may be the same buffer. */
static inline void vsgx_xor16(uint8_t *dst, const uint8_t *a, const uint8_t *b)
{
    uint64_t a0, a1, b0, b1;
    __builtin_memcpy(&a0, a, 8);
    __builtin_memcpy(&a1, a + 8, 8);
    __builtin_memcpy(&b0, b, 8);
    __builtin_memcpy(&b1, b + 8, 8);
    a0 ^= b0;
    a1 ^= b1;
    __builtin_memcpy(dst, &a0, 8);
    __builtin_memcpy(dst + 8, &a1, 8);
}

/* Zeroes n bytes at p through a volatile pointer, so the stores survive dead-store elimination. */
static inline void vsgx_wipe(void *p, size_t n)
{
    volatile uint8_t *v = (volatile uint8_t *)p;
    while (n--)
        *v++ = 0;
}

#endif /* VSGX_CRYPTO_AES_INTERNAL_H */
