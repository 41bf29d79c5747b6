/*
 * vsgx trusted runtime: symmetric cryptography.
 *
 * AES-128 (encryption direction only), AES-128-CMAC and AES-128-GCM in portable, freestanding
 * C11: no AES-NI or PCLMULQDQ, no libc, no global mutable state. Key schedules and GHASH tables
 * live in caller-provided structures or on the stack of the one-shot functions, which wipe them
 * before returning, so every function here is safe to call from concurrent enclave threads.
 *
 * Side channels: the AES rounds use 4 KiB of T-tables and GHASH a 4-bit (Shoup) table, both
 * indexed by secret data. Their timing is independent of the data only as far as the cache and
 * the emulator make table lookups uniform.
 */
#ifndef VSGX_CRYPTO_H
#define VSGX_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An expanded AES-128 encryption key: the 11 round keys as 44 big-endian 32-bit words. */
typedef struct {
    uint32_t rk[44];
} vsgx_aes128_key;

/*
 * Expands the 16-byte AES-128 key into the encryption key schedule *ks. The caller owns *ks and
 * should wipe it when done with it.
 */
void vsgx_aes128_init(vsgx_aes128_key *ks, const uint8_t key[16]);

/*
 * Encrypts one 16-byte block (FIPS 197) with the schedule from vsgx_aes128_init. in and out may
 * be the same buffer.
 */
void vsgx_aes128_encrypt_block(const vsgx_aes128_key *ks, const uint8_t in[16], uint8_t out[16]);

/*
 * AES-128-CMAC (NIST SP 800-38B, RFC 4493): writes the full 16-byte MAC of the len bytes at msg
 * under key to mac. len may be 0 (msg is then not read and may be NULL). mac may overlap key or
 * msg: it is written last.
 */
void vsgx_aes128_cmac(const uint8_t key[16], const void *msg, size_t len, uint8_t mac[16]);

/*
 * AES-128-GCM authenticated encryption (NIST SP 800-38D) with a 16-byte tag.
 *
 * iv: iv_len >= 1 bytes; 12 bytes is the recommended length and the fast path (other lengths
 *     derive the pre-counter block with GHASH).
 * aad: aad_len bytes authenticated but not encrypted (may be NULL when aad_len is 0).
 * pt: len bytes of plaintext, encrypted into ct (len bytes). ct may be the same buffer as pt
 *     (in-place encryption); any other overlap is not supported. pt/ct may be NULL when len is 0.
 * tag: receives the 16-byte authentication tag.
 *
 * Returns 0 on success, or -1 without writing ct or tag when the arguments are invalid: iv is
 * NULL or iv_len is 0, len exceeds the SP 800-38D limit of 2^36 - 32 bytes, or iv_len or
 * aad_len is 2^61 bytes or more (their bit lengths must fit in 64 bits).
 */
int vsgx_aes128_gcm_encrypt(const uint8_t key[16], const uint8_t *iv, size_t iv_len,
                            const void *aad, size_t aad_len, const void *pt, size_t len,
                            void *ct, uint8_t tag[16]);

/*
 * AES-128-GCM authenticated decryption: the inverse of vsgx_aes128_gcm_encrypt with the same
 * key, iv and aad. The tag is verified (constant-time comparison) over aad and ct before any
 * plaintext is written.
 *
 * Returns 0 when the tag verifies, with the len bytes of plaintext in pt. Returns -1 when it does
 * not, or when the arguments are invalid as for encryption; pt's len bytes are then zeroed (when
 * pt is not NULL). pt may be the same buffer as ct (in-place decryption; a failed verification
 * then zeroes the ciphertext); any other overlap is not supported.
 */
int vsgx_aes128_gcm_decrypt(const uint8_t key[16], const uint8_t *iv, size_t iv_len,
                            const void *aad, size_t aad_len, const void *ct, size_t len,
                            void *pt, const uint8_t tag[16]);

/*
 * Compares n bytes at a and b in time that depends only on n. Returns 0 when they are equal and
 * 1 otherwise (never an ordering, unlike memcmp).
 */
int vsgx_memequal_ct(const void *a, const void *b, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* VSGX_CRYPTO_H */
