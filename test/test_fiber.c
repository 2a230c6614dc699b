/* test_fiber.c — fibers and their stacks: ping-pong with values, 10k pooled
 * fibers round-robined, callee-saved registers and FP control state across
 * switches, the stack pool (reuse, bounds, guard, madvise, mmap failure),
 * deep recursion, overflow and returning-entry reports in forked children,
 * two threads running fibers at once, and the cost of a switch.
 */
/* otp-test: threads */
#include <fcntl.h>
#include <fenv.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "otp/common.h"
#include "fiber.h"

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#endif
#if defined(TEST_ASAN) || defined(TEST_TSAN)
#define TEST_SANITIZED 1
#endif

#define NOINLINE __attribute__((noinline))

/* ------------------------------------------------------------ ping-pong */

struct pingpong {
    otp__fiber main, a, b;
    long value; /* passed along main -> a -> b -> main */
    int stop;
};

static void pp_a(void *arg)
{
    struct pingpong *p = arg;
    while (!p->stop) {
        p->value = p->value * 2 + 1;
        otp__fiber_switch(&p->a, &p->b);
    }
    otp__fiber_exit(&p->a, &p->b);
}

static void pp_b(void *arg)
{
    struct pingpong *p = arg;
    while (!p->stop) {
        p->value += 1000;
        otp__fiber_switch(&p->b, &p->main);
    }
    otp__fiber_exit(&p->b, &p->main);
}

static void test_ping_pong(void **state)
{
    (void)state;
    otp__stack_pool pool;
    otp__stack *sa, *sb;
    struct pingpong p = {.value = 0};
    assert_int_equal(otp__stack_pool_init(&pool, 0, 4), 0);
    assert_int_equal(otp__stack_get(&pool, &sa), 0);
    assert_int_equal(otp__stack_get(&pool, &sb), 0);
    assert_true(sa->size >= 64 * 1024);
    otp__fiber_init_main(&p.main);
    otp__fiber_make(&p.a, sa, pp_a, &p);
    otp__fiber_make(&p.b, sb, pp_b, &p);
    for (long i = 0; i < 1000; i++) {
        p.value = i;
        otp__fiber_switch(&p.main, &p.a);
        assert_int_equal(p.value, i * 2 + 1 + 1000);
    }
    p.stop = 1;
    otp__fiber_switch(&p.main, &p.a); /* a exits to b, b exits to main */
    otp__stack_put(&pool, sa);
    otp__stack_put(&pool, sb);
    assert_int_equal(pool.nlive, 0);
    otp__stack_pool_destroy(&pool);
}

/* ----------------------------------------------------- many fibers */

#if defined(TEST_TSAN)
#define MANY 2000 /* each TSan fiber context costs TSan a large mapping */
#else
#define MANY 10000
#endif
#define MANY_ROUNDS 20

struct many {
    otp__fiber main;
    otp__fiber *fibers;
    long *seen;
    long bad;
    int done;
};
static struct many many;

static void many_entry(void *arg)
{
    long id = (long)(intptr_t)arg;
    volatile long mine = id * 7919 + 13;
    volatile double half = (double)id * 0.5;
    volatile char pattern[48];
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (char)(id + (long)i);
    for (int round = 0; !many.done; round++) {
        if (mine != id * 7919 + 13 || half != (double)id * 0.5 || many.seen[id] != round)
            many.bad++;
        for (size_t i = 0; i < sizeof(pattern); i++)
            if (pattern[i] != (char)(id + (long)i))
                many.bad++;
        many.seen[id]++;
        otp__fiber_switch(&many.fibers[id], &many.main);
    }
    otp__fiber_exit(&many.fibers[id], &many.main);
}

static void test_many_fibers(void **state)
{
    (void)state;
    otp__stack_pool pool;
    otp__stack **stacks = calloc(MANY, sizeof(*stacks));
    many.fibers = calloc(MANY, sizeof(*many.fibers));
    many.seen = calloc(MANY, sizeof(*many.seen));
    many.bad = 0;
    many.done = 0;
    assert_non_null(stacks);
    assert_non_null(many.fibers);
    assert_non_null(many.seen);
    assert_int_equal(otp__stack_pool_init(&pool, 0, 256), 0);
    otp__fiber_init_main(&many.main);
    for (long i = 0; i < MANY; i++) {
        assert_int_equal(otp__stack_get(&pool, &stacks[i]), 0);
        otp__fiber_make(&many.fibers[i], stacks[i], many_entry, (void *)(intptr_t)i);
    }
    for (int r = 0; r < MANY_ROUNDS; r++)
        for (long i = 0; i < MANY; i++)
            otp__fiber_switch(&many.main, &many.fibers[i]);
    many.done = 1;
    for (long i = 0; i < MANY; i++) {
        otp__fiber_switch(&many.main, &many.fibers[i]);
        otp__stack_put(&pool, stacks[i]);
    }
    assert_int_equal(many.bad, 0);
    for (long i = 0; i < MANY; i++)
        assert_int_equal(many.seen[i], MANY_ROUNDS);
    assert_int_equal(pool.nwarm + pool.ncold, 256);
    assert_int_equal(pool.nlive, 0);

    /* A second generation runs on recycled stacks, warm and madvise'd. */
    otp__stack *again[300];
    for (int i = 0; i < 300; i++)
        assert_int_equal(otp__stack_get(&pool, &again[i]), 0);
    assert_int_equal(pool.nwarm + pool.ncold, 0);
    memset(many.seen, 0, MANY * sizeof(*many.seen));
    many.done = 0;
    for (long i = 0; i < 300; i++)
        otp__fiber_make(&many.fibers[i], again[i], many_entry, (void *)(intptr_t)i);
    for (long i = 0; i < 300; i++)
        otp__fiber_switch(&many.main, &many.fibers[i]);
    many.done = 1;
    for (long i = 0; i < 300; i++) {
        otp__fiber_switch(&many.main, &many.fibers[i]);
        otp__stack_put(&pool, again[i]);
        assert_int_equal(many.seen[i], 1);
    }
    assert_int_equal(many.bad, 0);
    otp__stack_pool_destroy(&pool);
    free(stacks);
    free(many.fibers);
    free(many.seen);
}

/* ------------------------------------------ registers and FP state */

/* fiber_test_switch_regs(from, to, seed): loads seed-derived values into
 * every callee-saved register (x86-64: rbx rbp r12-r15; aarch64: x19-x28
 * and d8-d15), calls otp__fiber_switch(from, to), and returns how many of
 * them no longer hold their value when it comes back. */
#if defined(__x86_64__) && defined(__ELF__)
#define HAVE_REG_CHECK 1
__asm__(".pushsection .text\n"
        ".p2align 4\n"
        ".globl fiber_test_switch_regs\n"
        ".type fiber_test_switch_regs, @function\n"
        "fiber_test_switch_regs:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq $8, %rsp\n"
        "    movq %rdx, (%rsp)\n"
        "    movq %rdx, %rbx\n"
        "    leaq 1(%rdx), %rbp\n"
        "    leaq 2(%rdx), %r12\n"
        "    leaq 3(%rdx), %r13\n"
        "    leaq 4(%rdx), %r14\n"
        "    leaq 5(%rdx), %r15\n"
        "    call otp__fiber_switch@PLT\n"
        "    movq (%rsp), %rdx\n"
        "    xorl %eax, %eax\n"
        "    cmpq %rdx, %rbx\n"
        "    je 1f\n"
        "    incl %eax\n"
        "1:  incq %rdx\n"
        "    cmpq %rdx, %rbp\n"
        "    je 2f\n"
        "    incl %eax\n"
        "2:  incq %rdx\n"
        "    cmpq %rdx, %r12\n"
        "    je 3f\n"
        "    incl %eax\n"
        "3:  incq %rdx\n"
        "    cmpq %rdx, %r13\n"
        "    je 4f\n"
        "    incl %eax\n"
        "4:  incq %rdx\n"
        "    cmpq %rdx, %r14\n"
        "    je 5f\n"
        "    incl %eax\n"
        "5:  incq %rdx\n"
        "    cmpq %rdx, %r15\n"
        "    je 6f\n"
        "    incl %eax\n"
        "6:  addq $8, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size fiber_test_switch_regs, .-fiber_test_switch_regs\n"
        ".popsection\n");
#elif defined(__aarch64__) && defined(__ELF__)
#define HAVE_REG_CHECK 1
/* One instruction or register per line: */
// clang-format off
#define LOAD_X(r, k) "    add " #r ", x2, #" #k "\n"
#define LOAD_D(r, k) "    add x9, x2, #" #k "\n    fmov " #r ", x9\n"
#define CHECK_X(r, k) "    add x9, x2, #" #k "\n    cmp " #r ", x9\n    cinc x0, x0, ne\n"
#define CHECK_D(r, k)                                                                              \
    "    add x9, x2, #" #k "\n    fmov x10, " #r "\n    cmp x10, x9\n    cinc x0, x0, ne\n"
__asm__(".pushsection .text\n"
        ".p2align 4\n"
        ".globl fiber_test_switch_regs\n"
        ".type fiber_test_switch_regs, %function\n"
        "fiber_test_switch_regs:\n"
        "    stp x29, x30, [sp, #-176]!\n"
        "    mov x29, sp\n"
        "    stp x19, x20, [sp, #16]\n"
        "    stp x21, x22, [sp, #32]\n"
        "    stp x23, x24, [sp, #48]\n"
        "    stp x25, x26, [sp, #64]\n"
        "    stp x27, x28, [sp, #80]\n"
        "    stp d8, d9, [sp, #96]\n"
        "    stp d10, d11, [sp, #112]\n"
        "    stp d12, d13, [sp, #128]\n"
        "    stp d14, d15, [sp, #144]\n"
        "    str x2, [sp, #160]\n"
        LOAD_X(x19, 1)
        LOAD_X(x20, 2)
        LOAD_X(x21, 3)
        LOAD_X(x22, 4)
        LOAD_X(x23, 5)
        LOAD_X(x24, 6)
        LOAD_X(x25, 7)
        LOAD_X(x26, 8)
        LOAD_X(x27, 9)
        LOAD_X(x28, 10)
        LOAD_D(d8, 11)
        LOAD_D(d9, 12)
        LOAD_D(d10, 13)
        LOAD_D(d11, 14)
        LOAD_D(d12, 15)
        LOAD_D(d13, 16)
        LOAD_D(d14, 17)
        LOAD_D(d15, 18)
        "    bl otp__fiber_switch\n"
        "    ldr x2, [sp, #160]\n"
        "    mov x0, #0\n"
        CHECK_X(x19, 1)
        CHECK_X(x20, 2)
        CHECK_X(x21, 3)
        CHECK_X(x22, 4)
        CHECK_X(x23, 5)
        CHECK_X(x24, 6)
        CHECK_X(x25, 7)
        CHECK_X(x26, 8)
        CHECK_X(x27, 9)
        CHECK_X(x28, 10)
        CHECK_D(d8, 11)
        CHECK_D(d9, 12)
        CHECK_D(d10, 13)
        CHECK_D(d11, 14)
        CHECK_D(d12, 15)
        CHECK_D(d13, 16)
        CHECK_D(d14, 17)
        CHECK_D(d15, 18)
        "    ldp x19, x20, [sp, #16]\n"
        "    ldp x21, x22, [sp, #32]\n"
        "    ldp x23, x24, [sp, #48]\n"
        "    ldp x25, x26, [sp, #64]\n"
        "    ldp x27, x28, [sp, #80]\n"
        "    ldp d8, d9, [sp, #96]\n"
        "    ldp d10, d11, [sp, #112]\n"
        "    ldp d12, d13, [sp, #128]\n"
        "    ldp d14, d15, [sp, #144]\n"
        "    ldp x29, x30, [sp], #176\n"
        "    ret\n"
        ".size fiber_test_switch_regs, .-fiber_test_switch_regs\n"
        ".popsection\n");
// clang-format on
#endif
#ifdef HAVE_REG_CHECK
long fiber_test_switch_regs(otp__fiber *from, otp__fiber *to, long seed);
#endif

struct regs {
    otp__fiber main, f;
    long bad_main, bad_fiber;
    int rounds;
};

static void regs_entry(void *arg)
{
    struct regs *r = arg;
#ifdef HAVE_REG_CHECK
    for (int i = 0; i < r->rounds; i++)
        r->bad_fiber += fiber_test_switch_regs(&r->f, &r->main, 0x7e570000L + i * 64);
#endif
    otp__fiber_exit(&r->f, &r->main);
}

/* Many live values at once: in an optimised build most sit in callee-saved
 * registers across the switch, the rest in the frame. */
NOINLINE static long live_values(otp__fiber *self, otp__fiber *other, long seed)
{
    long a = seed * 3, b = seed ^ 0x55, c = seed + 7, d = seed * seed, e = ~seed, g = seed * 8;
    double x = (double)seed * 1.25, y = (double)seed / 3.0, z = -(double)seed;
    otp__fiber_switch(self, other);
    long bad = 0;
    bad += a != seed * 3;
    bad += b != (seed ^ 0x55);
    bad += c != seed + 7;
    bad += d != seed * seed;
    bad += e != ~seed;
    bad += g != seed * 8;
    bad += x != (double)seed * 1.25;
    bad += y != (double)seed / 3.0;
    bad += z != -(double)seed;
    return bad;
}

static void live_entry(void *arg)
{
    struct regs *r = arg;
    for (int i = 0; i < r->rounds; i++)
        r->bad_fiber += live_values(&r->f, &r->main, 1000 + i);
    otp__fiber_exit(&r->f, &r->main);
}

static void test_callee_saved(void **state)
{
    (void)state;
    otp__stack_pool pool;
    otp__stack *s;
    struct regs r = {.rounds = 100};
    assert_int_equal(otp__stack_pool_init(&pool, 0, 1), 0);
    assert_int_equal(otp__stack_get(&pool, &s), 0);
#ifdef HAVE_REG_CHECK
    otp__fiber_init_main(&r.main);
    otp__fiber_make(&r.f, s, regs_entry, &r);
    for (int i = 0; i <= r.rounds; i++)
        r.bad_main += fiber_test_switch_regs(&r.main, &r.f, 0x3a170000L + i * 64);
    assert_int_equal(r.bad_main, 0);
    assert_int_equal(r.bad_fiber, 0);
#endif
    r.bad_main = r.bad_fiber = 0;
    otp__fiber_init_main(&r.main);
    otp__fiber_make(&r.f, s, live_entry, &r);
    for (int i = 0; i <= r.rounds; i++)
        r.bad_main += live_values(&r.main, &r.f, -5000 - i);
    assert_int_equal(r.bad_main, 0);
    assert_int_equal(r.bad_fiber, 0);
    otp__stack_put(&pool, s);
    otp__stack_pool_destroy(&pool);
}

struct fpstate {
    otp__fiber main, f;
    long bad;
};

static unsigned mxcsr_rounding(void)
{
#if defined(__x86_64__)
    return _mm_getcsr() & 0x6000u;
#else
    return 0;
#endif
}

/* 1/3 rounded in the current mode: differs between upward and downward. */
NOINLINE static double third(void)
{
    volatile double one = 1.0, three = 3.0;
    return one / three;
}

static void fp_entry(void *arg)
{
    struct fpstate *st = arg;
    volatile double kept = 2.718281828459045;
    fesetround(FE_UPWARD);
    double up = third();
    unsigned mx = mxcsr_rounding();
    for (int i = 0; i < 50; i++) {
        otp__fiber_switch(&st->f, &st->main);
        st->bad += fegetround() != FE_UPWARD;
        st->bad += mxcsr_rounding() != mx;
        st->bad += third() != up;
        st->bad += kept != 2.718281828459045;
    }
    otp__fiber_exit(&st->f, &st->main);
}

static void test_fp_state(void **state)
{
    (void)state;
    otp__stack_pool pool;
    otp__stack *s;
    struct fpstate st = {.bad = 0};
    volatile double pi = 3.141592653589793;
    assert_int_equal(otp__stack_pool_init(&pool, 0, 1), 0);
    assert_int_equal(otp__stack_get(&pool, &s), 0);
    assert_int_equal(fegetround(), FE_TONEAREST);
    fesetround(FE_DOWNWARD);
    double down = third();
    unsigned mx = mxcsr_rounding();
    otp__fiber_init_main(&st.main);
    otp__fiber_make(&st.f, s, fp_entry, &st); /* starts with our (downward) mode */
    for (int i = 0; i <= 50; i++) {
        otp__fiber_switch(&st.main, &st.f);
        assert_int_equal(fegetround(), FE_DOWNWARD);
        assert_int_equal(mxcsr_rounding(), mx);
        assert_true(third() == down);
        assert_true(pi == 3.141592653589793);
    }
    fesetround(FE_TONEAREST);
    assert_int_equal(st.bad, 0);
    otp__stack_put(&pool, s);
    otp__stack_pool_destroy(&pool);
}

/* ------------------------------------------------------- the pool */

/* The protection of the mapping that holds addr, from /proc/self/maps. */
static int prot_at(const void *addr, char perms[5])
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    char line[512];
    int found = -1;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        char p[5];
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, p) == 3 && (uintptr_t)addr >= lo &&
            (uintptr_t)addr < hi) {
            memcpy(perms, p, 5);
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

static int failing_mmaps;
static void *failing_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    failing_mmaps++;
    return MAP_FAILED;
}

static void test_stack_pool(void **state)
{
    (void)state;
    otp__stack_pool pool;
    otp__stack *a, *b, *c, *d;
    assert_int_equal(otp__stack_pool_init(&pool, (size_t)2 << 30, 2), -OTP_EBADARG);
    assert_int_equal(otp__stack_pool_init(&pool, 100 * 1024, 2), 0);
    assert_int_equal(otp__stack_get(&pool, &a), 0);
    assert_true(a->size >= 100 * 1024);
    assert_int_equal((uintptr_t)(a->base + a->size) % 16, 0);
    assert_true(a->base - a->map >= 4096);

    /* The guard is PROT_NONE, the stack read-write. */
    char perms[5];
    if (prot_at(a->map, perms) == 0) {
        assert_string_equal(perms, "---p");
        assert_int_equal(prot_at(a->base, perms), 0);
        assert_memory_equal(perms, "rw", 2);
    }

    /* get / put / get hands the same stack back, with no new mapping. */
    otp__stack_put(&pool, a);
    assert_int_equal(pool.nwarm, 1);
    pool.sys_mmap = failing_mmap;
    assert_int_equal(otp__stack_get(&pool, &b), 0);
    assert_ptr_equal(a, b);
    assert_int_equal(failing_mmaps, 0);

    /* An empty cache has to map, and a failed mmap is -OTP_ENOMEM. */
    assert_int_equal(otp__stack_get(&pool, &c), -OTP_ENOMEM);
    assert_int_equal(failing_mmaps, 1);
    assert_int_equal(pool.nlive, 1);
    pool.sys_mmap = mmap;

    /* The cache holds at most max_cached; the rest are unmapped. */
    assert_int_equal(otp__stack_get(&pool, &c), 0);
    assert_int_equal(otp__stack_get(&pool, &d), 0);
    assert_int_equal(pool.nlive, 3);
    otp__stack_put(&pool, b);
    otp__stack_put(&pool, c);
    otp__stack_put(&pool, d);
    assert_int_equal(pool.nwarm + pool.ncold, 2);
    assert_int_equal(pool.nlive, 0);
    otp__stack_pool_destroy(&pool);

    /* Past warm_max, the least recently returned stacks go cold (madvise'd)
     * and come back last, still usable. */
    assert_int_equal(otp__stack_pool_init(&pool, 0, 8), 0);
    pool.warm_max = 1;
    otp__stack *s[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(otp__stack_get(&pool, &s[i]), 0);
        memset(s[i]->base, 0xab, s[i]->size); /* dirty every page */
    }
    for (int i = 0; i < 3; i++)
        otp__stack_put(&pool, s[i]);
    assert_int_equal(pool.nwarm, 1);
    assert_int_equal(pool.ncold, 2);
    assert_int_equal(otp__stack_get(&pool, &a), 0);
    assert_ptr_equal(a, s[2]); /* warm first */
    assert_int_equal(otp__stack_get(&pool, &b), 0);
    assert_int_equal(otp__stack_get(&pool, &c), 0);
    assert_true(b == s[1] || b == s[0]);
    assert_true(c == s[1] || c == s[0]);
    assert_int_equal(b->size, pool.stack_size); /* header survived madvise */
    memset(b->base, 0x5a, b->size);
    otp__stack_put(&pool, a);
    otp__stack_put(&pool, b);
    otp__stack_put(&pool, c);
    otp__stack_pool_destroy(&pool);
}

/* --------------------------------------------------- deep recursion */

struct deep {
    otp__fiber main, f;
    const char *limit;
    const char *deepest;
    long depth, bad;
};

NOINLINE static long dive(struct deep *dp, long depth)
{
    volatile char pad[512];
    pad[0] = (char)depth;
    pad[511] = 1;
    /* The frame, not pad: ASan may put pad on a fake stack elsewhere. */
    const char *here = (const char *)__builtin_frame_address(0);
    long bad;
    if ((uintptr_t)here - 2048 > (uintptr_t)dp->limit) {
        bad = dive(dp, depth + 1);
    } else {
        dp->depth = depth;
        dp->deepest = here;
        bad = 0;
    }
    return bad + (pad[0] != (char)depth) + (pad[511] != 1);
}

static void deep_entry(void *arg)
{
    struct deep *dp = arg;
    dp->bad = dive(dp, 0);
    otp__fiber_exit(&dp->f, &dp->main);
}

static void test_deep_recursion(void **state)
{
    (void)state;
    otp__stack_pool pool;
    otp__stack *s;
    struct deep dp = {.bad = -1};
    assert_int_equal(otp__stack_pool_init(&pool, 0, 1), 0);
    assert_int_equal(otp__stack_get(&pool, &s), 0);
    dp.limit = s->base + 4096; /* use all but the last 4-6 KiB */
    otp__fiber_init_main(&dp.main);
    otp__fiber_make(&dp.f, s, deep_entry, &dp);
    otp__fiber_switch(&dp.main, &dp.f);
    assert_int_equal(dp.bad, 0);
    assert_true(dp.depth > 10);
    assert_true(dp.deepest >= s->base);
    assert_true(dp.deepest < s->base + 8192);
    otp__stack_put(&pool, s);
    otp__stack_pool_destroy(&pool);
}

/* ------------------------------------- reports from forked children */

/* cmocka puts its own SIGSEGV/SIGBUS handlers in place around every test;
 * a child puts back what main() had (ours), as an application would have. */
static struct sigaction main_segv, main_bus;

static void restore_main_handlers(void)
{
    sigaction(SIGSEGV, &main_segv, NULL);
    sigaction(SIGBUS, &main_bus, NULL);
}

struct crash {
    otp__fiber main, f;
};
static struct crash crash;
static volatile int bottomless_stop = -1;

NOINLINE static int bottomless(int n)
{
    volatile char pad[200];
    pad[n % 200] = (char)n;
    if (n == bottomless_stop)
        return 0;
    return bottomless(n + 1) + pad[n % 200]; /* not a tail call */
}

static void overflow_entry(void *arg)
{
    (void)arg;
    bottomless(0);
    otp__fiber_exit(&crash.f, &crash.main);
}

static void returning_entry(void *arg)
{
    (void)arg;
}

/* Runs entry on a fresh fiber in a child whose stderr is captured; returns
 * the child's wait status and what it wrote. */
static int run_child(void (*entry)(void *), char *out, size_t cap)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        restore_main_handlers();
        otp__stack_pool pool;
        otp__stack *s;
        if (otp__fiber_thread_init() != 0 || otp__stack_pool_init(&pool, 0, 1) != 0 ||
            otp__stack_get(&pool, &s) != 0)
            _exit(3);
        otp__fiber_init_main(&crash.main);
        otp__fiber_make(&crash.f, s, entry, NULL);
        otp__fiber_switch(&crash.main, &crash.f);
        _exit(4);
    }
    close(fds[1]);
    size_t n = 0;
    for (;;) {
        char buf[4096];
        ssize_t r = read(fds[0], buf, sizeof(buf));
        if (r <= 0)
            break;
        size_t take = (size_t)r < cap - 1 - n ? (size_t)r : cap - 1 - n;
        memcpy(out + n, buf, take);
        n += take;
    }
    out[n] = '\0';
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void test_overflow_reported(void **state)
{
    (void)state;
    static char out[65536];
    int status = run_child(overflow_entry, out, sizeof(out));
    bool ours = strstr(out, "libotp: fiber stack overflow (stack of ") != NULL;
#if defined(TEST_ASAN)
    /* ASan may have kept SIGSEGV to itself; it exits 1 unless abort_on_error. */
    bool asan = strstr(out, "stack-overflow") != NULL || strstr(out, "SEGV on unknown address");
    if (!ours && !asan)
        fprintf(stderr, "child said:\n%s\n", out);
    assert_true(ours || asan);
    assert_true(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0));
    if (ours)
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
#else
    if (!ours)
        fprintf(stderr, "child said:\n%s\n", out);
    assert_true(ours);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
#endif
    if (ours) {
        /* One line, naming a stack of the default size. */
        const char *line = strstr(out, "libotp: fiber stack overflow");
        size_t size = 0;
        void *at = NULL;
        assert_int_equal(
            sscanf(line, "libotp: fiber stack overflow (stack of %zu bytes at %p)", &size, &at), 2);
        assert_true(size >= 64 * 1024 && size < 72 * 1024);
        assert_non_null(at);
    }
}

static void test_returning_entry_traps(void **state)
{
    (void)state;
    char out[65536];
    int status = run_child(returning_entry, out, sizeof(out));
    if (!strstr(out, "fiber entry function returned"))
        fprintf(stderr, "child said:\n%s\n", out);
    assert_non_null(strstr(out, "libotp: fiber entry function returned"));
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

/* A fault that is not on a guard page, or a SIGSEGV sent by raise(), still
 * crashes the way it would without us (under a sanitizer: its report). */
static int other_segv_child(bool by_raise)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDERR_FILENO);
        restore_main_handlers();
        otp__fiber_thread_init();
        if (by_raise) {
            raise(SIGSEGV);
        } else {
            volatile char *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p != MAP_FAILED)
                p[10] = 1;
        }
        _exit(5);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void test_other_segv_untouched(void **state)
{
    (void)state;
    for (int by_raise = 0; by_raise < 2; by_raise++) {
        int status = other_segv_child(by_raise);
#if defined(TEST_SANITIZED)
        assert_true(WIFSIGNALED(status) ||
                    (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 5));
#else
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGSEGV);
#endif
    }
}

/* ------------------------------------------------------ two threads */

#define THREAD_FIBERS 16
#define THREAD_ROUNDS 2000

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static long shared_count;           /* under shared_lock */
static atomic_long shared_switches; /* relaxed: a tally read after join */

struct worker {
    otp__fiber main;
    otp__fiber fibers[THREAD_FIBERS];
    long seen[THREAD_FIBERS];
    long bad;
    int done;
    int rc;
};

struct worker_arg {
    struct worker *w;
    int id;
};

static void worker_entry(void *arg)
{
    struct worker_arg *wa = arg;
    struct worker *w = wa->w;
    int id = wa->id;
    long local = 0;
    while (!w->done) {
        local++;
        w->seen[id]++;
        if (local % 64 == 0) {
            pthread_mutex_lock(&shared_lock);
            shared_count++;
            pthread_mutex_unlock(&shared_lock);
        }
        atomic_fetch_add_explicit(&shared_switches, 1, memory_order_relaxed);
        otp__fiber_switch(&w->fibers[id], &w->main);
        if (local != w->seen[id])
            w->bad++;
    }
    otp__fiber_exit(&w->fibers[id], &w->main);
}

static void *worker_thread(void *arg)
{
    struct worker *w = arg;
    otp__stack_pool pool;
    otp__stack *stacks[THREAD_FIBERS];
    struct worker_arg args[THREAD_FIBERS];
    w->rc = otp__fiber_thread_init();
    if (w->rc == 0)
        w->rc = otp__stack_pool_init(&pool, 0, THREAD_FIBERS);
    if (w->rc != 0)
        return NULL;
    otp__fiber_init_main(&w->main);
    for (int i = 0; i < THREAD_FIBERS; i++) {
        if ((w->rc = otp__stack_get(&pool, &stacks[i])) != 0)
            return NULL;
        args[i] = (struct worker_arg){w, i};
        otp__fiber_make(&w->fibers[i], stacks[i], worker_entry, &args[i]);
    }
    for (int r = 0; r < THREAD_ROUNDS; r++)
        for (int i = 0; i < THREAD_FIBERS; i++)
            otp__fiber_switch(&w->main, &w->fibers[i]);
    w->done = 1;
    for (int i = 0; i < THREAD_FIBERS; i++) {
        otp__fiber_switch(&w->main, &w->fibers[i]);
        otp__stack_put(&pool, stacks[i]);
    }
    otp__stack_pool_destroy(&pool);
    otp__fiber_thread_exit();
    return NULL;
}

static void test_two_threads(void **state)
{
    (void)state;
    static struct worker w[2];
    pthread_t t[2];
    memset(w, 0, sizeof(w));
    shared_count = 0;
    atomic_store(&shared_switches, 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker_thread, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(w[i].rc, 0);
        assert_int_equal(w[i].bad, 0);
        for (int f = 0; f < THREAD_FIBERS; f++)
            assert_int_equal(w[i].seen[f], THREAD_ROUNDS);
    }
    assert_int_equal(shared_count, 2 * THREAD_FIBERS * (THREAD_ROUNDS / 64));
    assert_int_equal(atomic_load(&shared_switches), 2 * THREAD_FIBERS * THREAD_ROUNDS);
}

/* ------------------------------------------------------- switch cost */

struct bench {
    otp__fiber main, f;
    long n;
};

static void bench_entry(void *arg)
{
    struct bench *b = arg;
    for (;;) {
        b->n++;
        otp__fiber_switch(&b->f, &b->main);
    }
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Prints the cost; asserts nothing about it (machines differ). */
static void test_switch_cost(void **state)
{
    (void)state;
#if defined(TEST_SANITIZED)
    const long rounds = 100000;
#else
    const long rounds = 2000000;
#endif
    otp__stack_pool pool;
    otp__stack *s;
    struct bench b = {.n = 0};
    assert_int_equal(otp__stack_pool_init(&pool, 0, 1), 0);
    assert_int_equal(otp__stack_get(&pool, &s), 0);
    otp__fiber_init_main(&b.main);
    otp__fiber_make(&b.f, s, bench_entry, &b);
    otp__fiber_switch(&b.main, &b.f); /* warm up */
    double t0 = now_ns();
    for (long i = 0; i < rounds; i++)
        otp__fiber_switch(&b.main, &b.f);
    double t1 = now_ns();
    assert_int_equal(b.n, rounds + 1);
#if defined(OTP__FIBER_UCONTEXT)
    const char *backend = "ucontext";
#elif defined(OTP__FIBER_ASM_X86_64)
    const char *backend = "x86-64 asm";
#else
    const char *backend = "aarch64 asm";
#endif
    fprintf(stderr, "fiber switch (%s): %.1f ns per switch\n", backend,
            (t1 - t0) / (double)(2 * rounds));
    /* b.f stays suspended for good; its stack goes back unused. */
    otp__stack_put(&pool, s);
    otp__stack_pool_destroy(&pool);
}

int main(void)
{
    if (otp__fiber_thread_init() != 0) {
        fprintf(stderr, "otp__fiber_thread_init failed\n");
        return 1;
    }
    sigaction(SIGSEGV, NULL, &main_segv);
    sigaction(SIGBUS, NULL, &main_bus);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ping_pong),
        cmocka_unit_test(test_many_fibers),
        cmocka_unit_test(test_callee_saved),
        cmocka_unit_test(test_fp_state),
        cmocka_unit_test(test_stack_pool),
        cmocka_unit_test(test_deep_recursion),
        cmocka_unit_test(test_overflow_reported),
        cmocka_unit_test(test_returning_entry_traps),
        cmocka_unit_test(test_other_segv_untouched),
        cmocka_unit_test(test_two_threads),
        cmocka_unit_test(test_switch_cost),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    otp__fiber_thread_exit();
    return failed;
}
