/* Sealing: data encrypted and authenticated under a key only this enclave (policy MRENCLAVE)
 * or its signer's enclaves (policy MRSIGNER) can get back from EGETKEY on this platform
 * (SDM Vol. 3D 38.18, EGETKEY; 38.17 key derivation).
 *
 * The blob has the layout of Intel's sgx_sealed_data_t (sgx_tseal.h): the KEYREQUEST that
 * derives the key (with a fresh random KEYID, so every blob has its own key), the offset of
 * the additional text in the payload, then AES-128-GCM with a zero 12-byte IV: payload size,
 * tag, payload = ciphertext || additional text (authenticated, not encrypted). */
#include "vsgx/crypto.h"
#include "vsgx/enclave.h"

typedef struct {
    sgx_keyrequest key_request;
    uint32_t plain_text_offset;
    uint8_t reserved[12];
    uint32_t payload_size;
    uint8_t reserved2[12];
    uint8_t payload_tag[16];
} sealed_header;

#define SEALED_HEADER 560
_Static_assert(__builtin_offsetof(sealed_header, payload_tag) + 16 == SEALED_HEADER,
               "sgx_sealed_data_t header");

/* Intel's defaults (sgx_tseal.h): bind the key to INIT, DEBUG and KSS and the reserved
 * high byte of ATTRIBUTES; MISCSELECT's reserved high nibble. */
#define SEAL_FLAGS_MASK 0xFF0000000000000BULL
#define SEAL_MISC_MASK 0xF0000000u

size_t vsgx_sealed_size(size_t aad_size, size_t text_size)
{
    if (aad_size > UINT32_MAX || text_size > UINT32_MAX - aad_size)
        return 0;
    return SEALED_HEADER + aad_size + text_size;
}

int vsgx_seal(uint16_t key_policy, const void *aad, size_t aad_size, const void *text,
              size_t text_size, void *sealed, size_t sealed_size)
{
    static const uint8_t iv[12];
    size_t need = vsgx_sealed_size(aad_size, text_size);
    if ((key_policy != VSGX_KEYPOLICY_MRENCLAVE && key_policy != VSGX_KEYPOLICY_MRSIGNER) ||
        need == 0 || sealed_size < need || !vsgx_is_within_enclave(sealed, sealed_size))
        return VSGX_ERROR_INVALID_PARAMETER;
    sgx_report self;
    int status = vsgx_report(0, 0, &self);
    if (status)
        return status;
    sealed_header *h = sealed;
    memset(h, 0, SEALED_HEADER);
    h->key_request.keyname = SGX_KEYNAME_SEAL;
    h->key_request.keypolicy = key_policy;
    h->key_request.isvsvn = self.body.isvsvn;
    h->key_request.configsvn = self.body.configsvn;
    memcpy(h->key_request.cpusvn, self.body.cpusvn, sizeof self.body.cpusvn);
    h->key_request.attributemask.flags = SEAL_FLAGS_MASK;
    h->key_request.miscmask = SEAL_MISC_MASK;
    if (vsgx_read_rand(h->key_request.keyid, sizeof h->key_request.keyid))
        return VSGX_ERROR_KEY;
    h->plain_text_offset = (uint32_t)text_size;
    h->payload_size = (uint32_t)(text_size + aad_size);
    uint8_t key[16];
    status = vsgx_getkey(&h->key_request, key);
    if (status)
        return VSGX_ERROR_KEY;
    uint8_t *payload = (uint8_t *)sealed + SEALED_HEADER;
    memcpy(payload + text_size, aad, aad_size);
    status = vsgx_aes128_gcm_encrypt(key, iv, sizeof iv, payload + text_size, aad_size, text,
                                     text_size, payload, h->payload_tag);
    memset(key, 0, sizeof key);
    return status ? VSGX_ERROR_INVALID_PARAMETER : 0;
}

int vsgx_unseal(const void *sealed, size_t sealed_size, void *text, size_t text_size,
                size_t *text_out, void *aad, size_t aad_size, size_t *aad_out)
{
    static const uint8_t iv[12];
    const sealed_header *h = sealed;
    if (sealed_size < SEALED_HEADER || !vsgx_is_within_enclave(sealed, sealed_size))
        return VSGX_ERROR_INVALID_PARAMETER;
    size_t payload = h->payload_size, text_len = h->plain_text_offset;
    if (text_len > payload || SEALED_HEADER + payload != sealed_size ||
        text_len > text_size || payload - text_len > aad_size)
        return VSGX_ERROR_INVALID_PARAMETER;
    if (h->key_request.keyname != SGX_KEYNAME_SEAL)
        return VSGX_ERROR_INVALID_PARAMETER;
    uint8_t key[16];
    if (vsgx_getkey(&h->key_request, key))
        return VSGX_ERROR_KEY;   /* e.g. SGX_INVALID_ISVSVN / SGX_INVALID_CPUSVN */
    const uint8_t *body = (const uint8_t *)sealed + SEALED_HEADER;
    int status = vsgx_aes128_gcm_decrypt(key, iv, sizeof iv, body + text_len,
                                         payload - text_len, body, text_len, text,
                                         h->payload_tag);
    memset(key, 0, sizeof key);
    if (status)
        return VSGX_ERROR_MAC_MISMATCH;
    if (aad)
        memcpy(aad, body + text_len, payload - text_len);
    if (text_out)
        *text_out = text_len;
    if (aad_out)
        *aad_out = payload - text_len;
    return 0;
}
