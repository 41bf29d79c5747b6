/* SGX2 dynamic memory (SDM Vol. 3D 39.5). The configuration reserves a range of ELRANGE with
 * no pages in it (dynamic_size); the loader maps it read/write. The first touch of a page
 * there faults, the guest kernel's fault handler adds a pending page with EAUG and the access
 * is retried; the enclave then takes the page with EACCEPT, which checks that the EPCM holds
 * exactly what the enclave asks for (a REG page, RW, PENDING: what EAUG creates) and clears
 * PENDING. Until then the page is unusable, so the OS cannot slip memory in unnoticed.
 *
 *   dynamic_range(i)       0: the range's address, 1: its size
 *   accept(first, count)   EACCEPT pages [first, first + count) of the range; the number
 *                          accepted (stops at the first failure)
 *   accept_status(i)       EACCEPT's status for page i (SGX_PAGE_ATTRIBUTES_MISMATCH, 19,
 *                          for a page accepted already)
 *   nonzero(count)         bytes that are not zero in the first count pages (EAUG zeroes)
 *   fill(count, seed)      write a pattern over the first count pages; its FNV-1a-64
 *   checksum(count)        FNV-1a-64 of the first count pages, read back
 *   make_code(page, value) write "mov $value, %eax; ret" into an accepted page, ask the
 *                          untrusted side to mprotect it RX (ocall "mprotect"), extend its
 *                          EPCM permissions with EMODPE (+X) and call it; its result
 */
#include "vsgx/enclave.h"

#define PAGE 4096
#define PROT_READ 1
#define PROT_EXEC 4

static uint8_t *dynamic_base(void)
{
    uint64_t offset;
    __asm__ volatile("mov %%gs:(%1), %0" : "=r"(offset) : "r"((uint64_t)VSGX_TD_DYNAMIC));
    return (uint8_t *)vsgx_enclave_base() + offset;
}

static uint64_t dynamic_pages(void)
{
    uint64_t size;
    __asm__ volatile("mov %%gs:(%1), %0" : "=r"(size) : "r"((uint64_t)VSGX_TD_DYNAMIC_SIZE));
    return size / PAGE;
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

VSGX_ECALL(dynamic_range)(uint64_t which)
{
    return which ? dynamic_pages() * PAGE : (uint64_t)dynamic_base();
}

VSGX_ECALL(accept)(uint64_t first, uint64_t count)
{
    uint64_t done = 0;
    if (first > dynamic_pages() || count > dynamic_pages() - first)
        return 0;
    for (; done < count; done++) {
        uint8_t *page = dynamic_base() + (first + done) * PAGE;
        if (vsgx_accept(page, SGX_PAGE_TYPE_REG | SGX_SECINFO_R | SGX_SECINFO_W |
                                  SGX_SECINFO_PENDING))
            break;
    }
    return done;
}

VSGX_ECALL(accept_status)(uint64_t index)
{
    if (index >= dynamic_pages())
        return UINT64_MAX;
    return (uint64_t)vsgx_accept(dynamic_base() + index * PAGE, SGX_PAGE_TYPE_REG |
                                 SGX_SECINFO_R | SGX_SECINFO_W | SGX_SECINFO_PENDING);
}

VSGX_ECALL(nonzero)(uint64_t count)
{
    const uint8_t *p = dynamic_base();
    uint64_t n = 0;
    for (uint64_t i = 0; i < count * PAGE; i++)
        n += p[i] != 0;
    return n;
}

VSGX_ECALL(fill)(uint64_t count, uint64_t seed)
{
    uint8_t *p = dynamic_base();
    uint64_t x = seed | 1;
    for (uint64_t i = 0; i < count * PAGE; i++) {
        x ^= x << 13;   /* xorshift64 */
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
    return fnv1a(p, count * PAGE);
}

VSGX_ECALL(checksum)(uint64_t count) { return fnv1a(dynamic_base(), count * PAGE); }

VSGX_ECALL(make_code)(uint64_t index, uint64_t value)
{
    uint8_t *page = dynamic_base() + index * PAGE;
    const uint8_t code[6] = {0xb8, (uint8_t)value, (uint8_t)(value >> 8),
                             (uint8_t)(value >> 16), (uint8_t)(value >> 24), 0xc3};
    if (index >= dynamic_pages())
        return UINT64_MAX;
    memcpy(page, code, sizeof code);
    uint64_t ret = 1;
    uint64_t args[3] = {(uint64_t)page, PAGE, PROT_READ | PROT_EXEC};
    if (vsgx_ocall("mprotect", &ret, args, 3) || ret)
        return UINT64_MAX - 1;
    vsgx_modpe(page, SGX_SECINFO_R | SGX_SECINFO_X);   /* EPCM: RW -> RWX */
    uint32_t (*fn)(void) = (uint32_t (*)(void))(void *)page;
    return fn();
}

VSGX_ECALL(accept_trim)(uint64_t first, uint64_t count)
{
    uint64_t done = 0;
    if (first > dynamic_pages() || count > dynamic_pages() - first)
        return 0;
    for (; done < count; done++) {
        uint8_t *page = dynamic_base() + (first + done) * PAGE;
        if (vsgx_accept(page, SGX_PAGE_TYPE_TRIM | SGX_SECINFO_MODIFIED))
            break;
    }
    return done;
}

VSGX_ECALL(accept_restricted)(uint64_t index, uint64_t perms)
{
    if (index >= dynamic_pages())
        return UINT64_MAX;
    return (uint64_t)vsgx_accept(dynamic_base() + index * PAGE, SGX_PAGE_TYPE_REG |
                                 (perms & (SGX_SECINFO_R | SGX_SECINFO_W | SGX_SECINFO_X)) |
                                 SGX_SECINFO_PR);
}

VSGX_ECALL(nonzero_range)(uint64_t first, uint64_t count)
{
    if (first > dynamic_pages() || count > dynamic_pages() - first)
        return UINT64_MAX;
    const uint8_t *p = dynamic_base() + first * PAGE;
    uint64_t n = 0;
    for (uint64_t i = 0; i < count * PAGE; i++)
        n += p[i] != 0;
    return n;
}

VSGX_ECALL(store)(uint64_t index, uint64_t value)
{
    if (index >= dynamic_pages())
        return UINT64_MAX;
    volatile uint64_t *p = (volatile uint64_t *)(void *)(dynamic_base() + index * PAGE);
    *p = value;
    return *p;
}
