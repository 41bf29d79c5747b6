/* Wrappers over the ENCLU leaves an enclave calls (SDM Vol. 3D ch. 40): each copies its
 * operands into storage with the alignment the leaf demands and returns the leaf's status. */
#include "vsgx/crypto.h"
#include "vsgx/enclave.h"

#define EREPORT 0
#define EGETKEY 1
#define EACCEPT 5
#define EMODPE 6

static inline uint64_t enclu(uint64_t leaf, uint64_t rbx, uint64_t rcx, uint64_t rdx)
{
    uint64_t rax = leaf;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd7"
                     : "+a"(rax), "+b"(rbx), "+c"(rcx), "+d"(rdx)
                     :
                     : "memory", "cc");
    return rax;
}

int vsgx_report(const sgx_targetinfo *target, const uint8_t report_data[64], sgx_report *out)
{
    sgx_targetinfo ti;
    _Alignas(128) uint8_t data[64] = {0};
    sgx_report report;
    if (!out)
        return VSGX_ERROR_INVALID_PARAMETER;
    if (target)
        memcpy(&ti, target, sizeof ti);
    else
        memset(&ti, 0, sizeof ti);
    if (report_data)
        memcpy(data, report_data, sizeof data);
    enclu(EREPORT, (uint64_t)&ti, (uint64_t)data, (uint64_t)&report);
    memcpy(out, &report, 432);
    return 0;
}

int vsgx_self_target(sgx_targetinfo *out)
{
    sgx_report report;
    int status = vsgx_report(0, 0, &report);
    if (status)
        return status;
    memset(out, 0, sizeof *out);
    memcpy(out->measurement, report.body.mrenclave, sizeof out->measurement);
    out->attributes = report.body.attributes;
    out->cet_attributes = report.body.cet_attributes;
    out->configsvn = report.body.configsvn;
    out->miscselect = report.body.miscselect;
    memcpy(out->configid, report.body.configid, sizeof out->configid);
    return 0;
}

int vsgx_getkey(const sgx_keyrequest *request, uint8_t key[16])
{
    sgx_keyrequest req;
    _Alignas(16) uint8_t out[16];
    memcpy(&req, request, sizeof req);
    int status = (int)enclu(EGETKEY, (uint64_t)&req, (uint64_t)out, 0);
    if (status == 0)
        memcpy(key, out, sizeof out);
    memset(out, 0, sizeof out);
    return status;
}

/* REPORT.MAC is AES-CMAC under the REPORT key over the body (SDM 38.16; EREPORT). The key
 * request asks for this enclave's report key with the KEYID the report carries. */
int vsgx_verify_report(const sgx_report *report)
{
    sgx_keyrequest req;
    uint8_t key[16], mac[16];
    memset(&req, 0, sizeof req);
    req.keyname = SGX_KEYNAME_REPORT;
    memcpy(req.keyid, report->keyid, sizeof req.keyid);
    int status = vsgx_getkey(&req, key);
    if (status)
        return status;
    vsgx_aes128_cmac(key, &report->body, sizeof report->body, mac);
    memset(key, 0, sizeof key);
    return vsgx_memequal_ct(mac, report->mac, sizeof mac) ? VSGX_ERROR_MAC_MISMATCH : 0;
}

int vsgx_accept(void *page, uint64_t secinfo_flags)
{
    sgx_secinfo secinfo = {.flags = secinfo_flags};
    return (int)enclu(EACCEPT, (uint64_t)&secinfo, (uint64_t)page, 0);
}

int vsgx_modpe(void *page, uint64_t secinfo_flags)
{
    sgx_secinfo secinfo = {.flags = secinfo_flags};
    enclu(EMODPE, (uint64_t)&secinfo, (uint64_t)page, 0);
    return 0;
}
