/* The attestation sample: local attestation between two enclaves on one platform (SDM Vol. 3D
 * 38.16, EREPORT; 38.17 and EGETKEY for the REPORT key).
 *
 * The same code plays both parts; the untrusted side only carries messages:
 *   1. the verifier's challenge: its TARGETINFO and a fresh nonce it keeps;
 *   2. the prover's EREPORT for that target, REPORTDATA = nonce || 32 bytes of its own
 *      (typically the hash of a public key it wants to bind to its identity);
 *   3. the verifier checks the REPORT's MAC with its own REPORT key (only the platform and the
 *      target enclave can derive it), that the nonce is the one it issued (no replays), and
 *      that the prover's MRENCLAVE is the one the caller expects.
 */
#include "vsgx/crypto.h"
#include "vsgx/enclave.h"

#define NONCE_SIZE 32
#define PAYLOAD_SIZE 32

/* Statuses beyond the runtime's (0 success, VSGX_ERROR_MAC_MISMATCH for a bad MAC). */
#define ATTEST_ERROR_PEER 0x21    /* the prover's MRENCLAVE is not the expected one */
#define ATTEST_ERROR_NONCE 0x22   /* no challenge outstanding, or not its nonce (a replay) */

static uint8_t nonce[NONCE_SIZE];
static int challenge_open;

/* Verifier, step 1: write this enclave's TARGETINFO (512 bytes) and a fresh nonce (32 bytes)
 * to untrusted memory; the nonce stays open until a report carrying it verifies. */
VSGX_ECALL(challenge)(uint8_t *untrusted_target, uint8_t *untrusted_nonce)
{
    sgx_targetinfo target;
    int status = vsgx_self_target(&target);
    if (!status)
        status = vsgx_read_rand(nonce, sizeof nonce);
    if (!status)
        status = vsgx_copy_to_untrusted(untrusted_target, &target, sizeof target);
    if (!status)
        status = vsgx_copy_to_untrusted(untrusted_nonce, nonce, sizeof nonce);
    challenge_open = !status;
    return (uint64_t)status;
}

/* Prover, step 2: EREPORT for the target (512 bytes of TARGETINFO) with REPORTDATA =
 * nonce (32 bytes) || payload (32 bytes); the 432-byte REPORT goes to untrusted_report. */
VSGX_ECALL(prove)(const uint8_t *untrusted_target, const uint8_t *untrusted_nonce,
                  const uint8_t *untrusted_payload, uint8_t *untrusted_report)
{
    sgx_targetinfo target;
    uint8_t data[64];
    sgx_report report;
    int status = vsgx_copy_from_untrusted(&target, untrusted_target, sizeof target);
    if (!status)
        status = vsgx_copy_from_untrusted(data, untrusted_nonce, NONCE_SIZE);
    if (!status)
        status = vsgx_copy_from_untrusted(data + NONCE_SIZE, untrusted_payload, PAYLOAD_SIZE);
    if (!status)
        status = vsgx_report(&target, data, &report);
    if (!status)
        status = vsgx_copy_to_untrusted(untrusted_report, &report, 432);
    return (uint64_t)status;
}

/* Verifier, step 3: check the 432-byte REPORT at untrusted_report; on success copy the
 * prover's authenticated payload to untrusted_payload and close the challenge. */
VSGX_ECALL(verify)(const uint8_t *untrusted_report, const uint8_t *expected_mrenclave,
                   uint8_t *untrusted_payload)
{
    sgx_report report;
    uint8_t expected[32];
    memset(&report, 0, sizeof report);
    int status = vsgx_copy_from_untrusted(&report, untrusted_report, 432);
    if (!status)
        status = vsgx_copy_from_untrusted(expected, expected_mrenclave, sizeof expected);
    if (status)
        return (uint64_t)status;
    status = vsgx_verify_report(&report);   /* the MAC first: nothing else means anything */
    if (status)
        return (uint64_t)status;
    if (!challenge_open || vsgx_memequal_ct(report.body.reportdata, nonce, NONCE_SIZE))
        return ATTEST_ERROR_NONCE;
    if (memcmp(report.body.mrenclave, expected, sizeof expected))
        return ATTEST_ERROR_PEER;
    challenge_open = 0;
    return (uint64_t)vsgx_copy_to_untrusted(untrusted_payload,
                                            report.body.reportdata + NONCE_SIZE, PAYLOAD_SIZE);
}
