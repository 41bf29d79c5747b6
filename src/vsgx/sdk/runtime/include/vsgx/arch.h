/* Architectural structures the trusted runtime uses, with the SDM's sizes and offsets
 * (SDM Vol. 3D ch. 38: TARGETINFO 38.17, REPORT 38.16, KEYREQUEST 38.18, SSA/GPRSGX 38.9).
 * The same layouts as vsgx.arch.structs; the asserts pin them. */
#ifndef VSGX_ARCH_H
#define VSGX_ARCH_H

#include <stdint.h>

typedef struct {
    uint64_t flags;
    uint64_t xfrm;
} sgx_attributes;

typedef struct {
    _Alignas(512) uint8_t measurement[32];
    sgx_attributes attributes;
    uint8_t cet_attributes;
    uint8_t reserved1;
    uint16_t configsvn;
    uint32_t miscselect;
    uint8_t reserved2[8];
    uint8_t configid[64];
    uint8_t reserved3[384];
} sgx_targetinfo;

typedef struct {
    uint8_t cpusvn[16];
    uint32_t miscselect;
    uint8_t cet_attributes;
    uint8_t reserved1[11];
    uint8_t isvextprodid[16];
    sgx_attributes attributes;
    uint8_t mrenclave[32];
    uint8_t reserved2[32];
    uint8_t mrsigner[32];
    uint8_t reserved3[32];
    uint8_t configid[64];
    uint16_t isvprodid;
    uint16_t isvsvn;
    uint16_t configsvn;
    uint8_t reserved4[42];
    uint8_t isvfamilyid[16];
    uint8_t reportdata[64];
} sgx_report_body;

typedef struct {
    _Alignas(512) sgx_report_body body;
    uint8_t keyid[32];
    uint8_t mac[16];
} sgx_report;

#define SGX_KEYNAME_REPORT 3
#define SGX_KEYNAME_SEAL   4
typedef struct {
    _Alignas(512) uint16_t keyname;
    uint16_t keypolicy;
    uint16_t isvsvn;
    uint16_t reserved1;
    uint8_t cpusvn[16];
    sgx_attributes attributemask;
    uint8_t keyid[32];
    uint32_t miscmask;
    uint16_t configsvn;
    uint8_t reserved2[434];
} sgx_keyrequest;

typedef struct {
    uint64_t rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rflags, rip, ursp, urbp;
    uint32_t exitinfo;
    uint8_t reserved[3];
    uint8_t aexnotify;
    uint64_t fsbase, gsbase;
} sgx_gprsgx;

typedef struct {
    uint64_t maddr;
    uint32_t errcd;
    uint32_t reserved;
} sgx_exinfo;

typedef struct {
    _Alignas(64) uint64_t flags;
    uint64_t reserved[7];
} sgx_secinfo;

#define SGX_SECINFO_R 0x1
#define SGX_SECINFO_W 0x2
#define SGX_SECINFO_X 0x4
#define SGX_SECINFO_PENDING 0x8
#define SGX_SECINFO_MODIFIED 0x10
#define SGX_SECINFO_PR 0x20
#define SGX_PAGE_TYPE_REG (2 << 8)
#define SGX_PAGE_TYPE_TCS (1 << 8)
#define SGX_PAGE_TYPE_TRIM (4 << 8)

_Static_assert(sizeof(sgx_targetinfo) == 512, "TARGETINFO");
_Static_assert(sizeof(sgx_report_body) == 384, "REPORTBODY");
_Static_assert(sizeof(sgx_report) == 512, "REPORT (432 bytes, 512-aligned)");
_Static_assert(__builtin_offsetof(sgx_report, mac) == 416, "REPORT.MAC");
_Static_assert(sizeof(sgx_keyrequest) == 512, "KEYREQUEST");
_Static_assert(__builtin_offsetof(sgx_keyrequest, miscmask) == 72, "KEYREQUEST.MISCMASK");
_Static_assert(sizeof(sgx_gprsgx) == 184, "GPRSGX");
_Static_assert(__builtin_offsetof(sgx_gprsgx, exitinfo) == 160, "GPRSGX.EXITINFO");

#endif
