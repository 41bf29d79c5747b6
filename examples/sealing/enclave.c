/* The sealing sample: keep a secret across enclave instances, bound to this enclave's
 * identity (policy MRENCLAVE) or to its signer's (policy MRSIGNER).
 *
 * The seal key comes from EGETKEY (SDM Vol. 3D, EGETKEY): under MRENCLAVE it depends on the
 * enclave's measurement, so only the very same enclave gets it back; under MRSIGNER on the
 * signer's key hash, ISVPRODID and the ISVSVN the blob records, so every enclave of that
 * product from that signer at that security version or later gets it back. vsgx_seal writes
 * the KEYREQUEST into the blob (Intel's sgx_sealed_data_t layout) and encrypts with
 * AES-128-GCM under that key.
 *
 * The blob is built in enclave memory and only then copied out: vsgx_seal and vsgx_unseal
 * work on trusted buffers.
 */
#include "vsgx/enclave.h"

#define SECRET_MAX 4096
#define SAMPLE_ERROR_SIZE 0x20   /* a buffer size does not match */

VSGX_ECALL(sealed_size)(uint64_t secret_size)
{
    return secret_size <= SECRET_MAX ? vsgx_sealed_size(0, secret_size) : 0;
}

/* Seal secret_size bytes at untrusted_secret under key_policy into untrusted_blob, which must
 * be exactly sealed_size(secret_size) bytes. Returns 0 or a VSGX_ERROR_* status. */
VSGX_ECALL(seal)(uint64_t key_policy, const uint8_t *untrusted_secret, uint64_t secret_size,
                 uint8_t *untrusted_blob, uint64_t blob_size)
{
    if (secret_size == 0 || secret_size > SECRET_MAX)
        return VSGX_ERROR_INVALID_PARAMETER;
    size_t need = vsgx_sealed_size(0, secret_size);
    if (blob_size != need)
        return SAMPLE_ERROR_SIZE;
    uint8_t *secret = vsgx_malloc(secret_size), *blob = vsgx_malloc(need);
    int status = VSGX_ERROR_INVALID_PARAMETER;
    if (secret && blob && !vsgx_copy_from_untrusted(secret, untrusted_secret, secret_size)) {
        status = vsgx_seal((uint16_t)key_policy, 0, 0, secret, secret_size, blob, need);
        if (!status)
            status = vsgx_copy_to_untrusted(untrusted_blob, blob, need);
    }
    if (secret)
        memset(secret, 0, secret_size);
    vsgx_free(secret);
    vsgx_free(blob);
    return (uint64_t)status;
}

/* Unseal the blob_size bytes at untrusted_blob into untrusted_secret (secret_size bytes, the
 * size of the sealed secret). Returns vsgx_unseal's status: 0, VSGX_ERROR_MAC_MISMATCH when
 * the key is not this enclave's to derive or the blob was altered, VSGX_ERROR_KEY when
 * EGETKEY refuses the request (e.g. the blob comes from a later ISVSVN). */
VSGX_ECALL(unseal)(const uint8_t *untrusted_blob, uint64_t blob_size, uint8_t *untrusted_secret,
                   uint64_t secret_size)
{
    if (secret_size == 0 || secret_size > SECRET_MAX ||
        blob_size != vsgx_sealed_size(0, secret_size))
        return SAMPLE_ERROR_SIZE;
    uint8_t *blob = vsgx_malloc(blob_size), *secret = vsgx_malloc(secret_size);
    int status = VSGX_ERROR_INVALID_PARAMETER;
    size_t got = 0;
    if (blob && secret && !vsgx_copy_from_untrusted(blob, untrusted_blob, blob_size)) {
        status = vsgx_unseal(blob, blob_size, secret, secret_size, &got, 0, 0, 0);
        if (!status && got != secret_size)
            status = SAMPLE_ERROR_SIZE;
        if (!status)
            status = vsgx_copy_to_untrusted(untrusted_secret, secret, secret_size);
    }
    if (secret)
        memset(secret, 0, secret_size);
    vsgx_free(secret);
    vsgx_free(blob);
    return (uint64_t)status;
}
