/* The enclave heap: a first-fit allocator with boundary-tag coalescing over the heap range
 * the layout reserved (its offset and size are in the thread data page). One spin lock
 * serializes all threads; blocks are 16-byte aligned. */
#include "vsgx/enclave.h"

typedef struct block {
    size_t size;          /* bytes including this header; bit 0 set when in use */
    struct block *next;   /* next free block (free blocks only) */
} block;

#define HEADER ((size_t)16)
#define USED ((size_t)1)

static volatile int heap_lock;
static int heap_ready;
static block *free_list;

static inline uint64_t td_get(unsigned offset)
{
    uint64_t value;
    __asm__ volatile("mov %%gs:(%1), %0" : "=r"(value) : "r"((uint64_t)offset));
    return value;
}

static void lock(void)
{
    while (__atomic_exchange_n(&heap_lock, 1, __ATOMIC_ACQUIRE))
        __builtin_ia32_pause();
}

static void unlock(void) { __atomic_store_n(&heap_lock, 0, __ATOMIC_RELEASE); }

static void heap_init(void)
{
    size_t size = td_get(VSGX_TD_HEAP_SIZE) & ~(size_t)15;
    free_list = 0;
    if (size >= 2 * HEADER) {
        free_list = (block *)((uint8_t *)vsgx_enclave_base() + td_get(VSGX_TD_HEAP));
        free_list->size = size;
        free_list->next = 0;
    }
    heap_ready = 1;
}

void *vsgx_malloc(size_t size)
{
    if (size == 0 || size > ((size_t)1 << 48))
        return 0;
    size_t need = ((size + 15) & ~(size_t)15) + HEADER;
    void *result = 0;
    lock();
    if (!heap_ready)
        heap_init();
    for (block **link = &free_list; *link; link = &(*link)->next) {
        block *b = *link;
        if (b->size < need)
            continue;
        if (b->size - need >= 2 * HEADER) {
            block *rest = (block *)((uint8_t *)b + need);
            rest->size = b->size - need;
            rest->next = b->next;
            *link = rest;
            b->size = need;
        } else {
            *link = b->next;
        }
        b->size |= USED;
        result = (uint8_t *)b + HEADER;
        break;
    }
    unlock();
    return result;
}

void *vsgx_calloc(size_t count, size_t size)
{
    if (size && count > (size_t)-1 / size)
        return 0;
    void *p = vsgx_malloc(count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

/* Free blocks are kept in address order so neighbours merge. */
void vsgx_free(void *p)
{
    if (!p)
        return;
    block *b = (block *)((uint8_t *)p - HEADER);
    lock();
    if (!(b->size & USED)) {
        unlock();
        vsgx_abort();   /* double free */
    }
    b->size &= ~USED;
    block *prev = 0, *next = free_list;
    while (next && next < b) {
        prev = next;
        next = next->next;
    }
    b->next = next;
    if (prev)
        prev->next = b;
    else
        free_list = b;
    if (next && (uint8_t *)b + b->size == (uint8_t *)next) {
        b->size += next->size;
        b->next = next->next;
    }
    if (prev && (uint8_t *)prev + prev->size == (uint8_t *)b) {
        prev->size += b->size;
        prev->next = b->next;
    }
    unlock();
}
