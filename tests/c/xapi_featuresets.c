/*
 * The xapi drop-in, exercised the way xapi's C stubs use it
 * (ocaml/libs/xenctrl-ext/xenctrlext_stubs.c): two weak symbols that only XenServer's patched
 * libxc defines, here provided by libcpupolicy-xc.
 *
 *   xapi_featuresets absent        built without the library: both symbols must be NULL
 *   xapi_featuresets combine A B   print the drop-in's combination of two xapi featuresets
 *   xapi_featuresets [DUMPS]       the checks below; DUMPS (optional) holds one line per real
 *                                  CPU dump, "VENDOR NAME FEATURESET", the HVM default featureset
 *                                  Xen 4.20 builds there, and every same-vendor pair is combined
 *
 * Feature positions come from Xen's public header as Debian's libxen-dev ships it, the same way
 * libxc itself reads them.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cpupolicy.h>

enum {
#define XEN_CPUFEATURE(name, value) X86_FEATURE_##name = value,
#include <xen/arch-x86/cpufeatureset.h>
};

/* Exactly as xapi declares them. */
__attribute__((weak))
void xc_combine_cpu_featuresets(const uint32_t *p1, const uint32_t *p2,
                                uint32_t *out, size_t len);
__attribute__((weak))
const char *xc_cpu_featuresets_are_compatible(const uint32_t *vm,
                                              const uint32_t *host,
                                              size_t len, char err[128]);

#define MAXW 64
#define CANARY 0xa5a5a5a5u

static int failures;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "xapi_featuresets: FAIL line %d: ", __LINE__);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            failures++;                                                         \
        }                                                                       \
    } while (0)

static void set(uint32_t *w, unsigned f) { w[f / 32] |= 1u << (f % 32); }
static bool has(const uint32_t *w, unsigned f) { return w[f / 32] & (1u << (f % 32)); }

/* A featureset of `len` words holding the given features (a list ending in ~0u). */
static void make(uint32_t *w, size_t len, const unsigned *features)
{
    memset(w, 0, len * sizeof(*w));
    for (; *features != ~0u; features++)
        set(w, *features);
}

#define FS(w, ...) make((w), 19, (const unsigned[]){ __VA_ARGS__, ~0u })

static void rsba_rules(void)
{
    uint32_t a[19], b[19], out[19];
    unsigned eibrs_host[] = { X86_FEATURE_IBRSB, X86_FEATURE_ARCH_CAPS, X86_FEATURE_EIBRS,
                              X86_FEATURE_RRSBA, ~0u };

    /* Both eIBRS+RRSBA: RRSBA. */
    make(a, 19, eibrs_host);
    make(b, 19, eibrs_host);
    xc_combine_cpu_featuresets(a, b, out, 19);
    CHECK(has(out, X86_FEATURE_RRSBA) && !has(out, X86_FEATURE_RSBA) && has(out, X86_FEATURE_EIBRS),
          "eIBRS+RRSBA twice must stay RRSBA");

    /* eIBRS+RRSBA with a host lacking eIBRS and RSBA: eIBRS goes, so RSBA. */
    FS(b, X86_FEATURE_IBRSB, X86_FEATURE_ARCH_CAPS);
    xc_combine_cpu_featuresets(a, b, out, 19);
    CHECK(has(out, X86_FEATURE_RSBA) && !has(out, X86_FEATURE_RRSBA) && !has(out, X86_FEATURE_EIBRS),
          "eIBRS+RRSBA with neither must give RSBA");
    CHECK(has(out, X86_FEATURE_ARCH_CAPS), "ARCH_CAPS survives");

    /* RSBA with anything: RSBA. */
    FS(a, X86_FEATURE_IBRSB, X86_FEATURE_ARCH_CAPS, X86_FEATURE_RSBA);
    make(b, 19, eibrs_host);
    xc_combine_cpu_featuresets(a, b, out, 19);
    CHECK(has(out, X86_FEATURE_RSBA) && !has(out, X86_FEATURE_RRSBA), "RSBA with eIBRS+RRSBA must give RSBA");
    FS(b, X86_FEATURE_IBRSB, X86_FEATURE_ARCH_CAPS);
    xc_combine_cpu_featuresets(b, a, out, 19);
    CHECK(has(out, X86_FEATURE_RSBA), "RSBA with a plain host must give RSBA");
    xc_combine_cpu_featuresets(a, a, out, 19);
    CHECK(has(out, X86_FEATURE_RSBA) && !has(out, X86_FEATURE_RRSBA), "RSBA with RSBA");
}

static void and_or_rules(void)
{
    uint32_t a[19], b[19], out[19];
    FS(a, X86_FEATURE_FPU, X86_FEATURE_FXSR, X86_FEATURE_SSE, X86_FEATURE_SSE2, X86_FEATURE_XSAVE,
       X86_FEATURE_AVX, X86_FEATURE_AVX2, X86_FEATURE_MD_CLEAR);
    FS(b, X86_FEATURE_FPU, X86_FEATURE_FXSR, X86_FEATURE_SSE, X86_FEATURE_SSE2, X86_FEATURE_XSAVE);
    xc_combine_cpu_featuresets(a, b, out, 19);
    CHECK(has(out, X86_FEATURE_SSE2) && has(out, X86_FEATURE_XSAVE), "ordinary bits both have are kept");
    CHECK(!has(out, X86_FEATURE_AVX) && !has(out, X86_FEATURE_AVX2), "ordinary bits one lacks are dropped");
    CHECK(has(out, X86_FEATURE_MD_CLEAR), "the accumulate bit MD_CLEAR is ORed");
    /* Dependencies: AVX2 without AVX on both sides goes. */
    FS(a, X86_FEATURE_FPU, X86_FEATURE_AVX2);
    xc_combine_cpu_featuresets(a, a, out, 19);
    CHECK(has(out, X86_FEATURE_FPU) && !has(out, X86_FEATURE_AVX2), "AVX2 needs AVX");
}

static void compatibility(void)
{
    uint32_t vm[19], host[19];
    char err[160];
    const char *r;

    FS(vm, X86_FEATURE_FPU, X86_FEATURE_XSAVE, X86_FEATURE_AVX, X86_FEATURE_AVX2, X86_FEATURE_AVX512F,
       X86_FEATURE_MD_CLEAR);
    FS(host, X86_FEATURE_FPU, X86_FEATURE_XSAVE, X86_FEATURE_AVX);
    memset(err, 0x5a, sizeof(err));
    r = xc_cpu_featuresets_are_compatible(vm, host, 19, err);
    CHECK(r != NULL, "a VM with AVX2 and AVX512F is not compatible with a host without them");
    if (r) {
        CHECK(strcmp(r, "AVX2 AVX512F") == 0, "message names each missing feature, got '%s'", r);
        CHECK(r >= err && r < err + 128, "message is in err");
    }
    CHECK(err[128] == 0x5a, "nothing written past err[127]");
    /* The host's features are a subset of the VM's: NULL. MD_CLEAR (accumulate) never blocks. */
    r = xc_cpu_featuresets_are_compatible(host, vm, 19, err);
    CHECK(r == NULL, "a subset is compatible, got '%s'", r ? r : "");
    FS(vm, X86_FEATURE_FPU, X86_FEATURE_MD_CLEAR);
    r = xc_cpu_featuresets_are_compatible(vm, host, 19, err);
    CHECK(r == NULL, "an accumulate bit the host lacks does not block, got '%s'", r ? r : "");

    /* Everything missing: cut to fit, NUL-terminated, nothing past 128 bytes. */
    uint32_t all[MAXW], none[MAXW] = { 0 };
    memset(all, 0xff, sizeof(all));
    memset(err, 0x5a, sizeof(err));
    r = xc_cpu_featuresets_are_compatible(all, none, MAXW, err);
    CHECK(r != NULL && strlen(r) <= 127 && strstr(r, " ...") != NULL, "long message is cut");
    CHECK(err[128] == 0x5a && err[159] == 0x5a, "nothing written past err[127]");
}

static void lengths(void)
{
    uint32_t a[MAXW + 4], b[MAXW + 4], out[MAXW + 4];

    /* Shorter than Xen's word count (8 words): exactly 8 read and written. */
    for (int i = 0; i < MAXW + 4; i++)
        a[i] = b[i] = out[i] = CANARY;
    make(a, 8, (const unsigned[]){ X86_FEATURE_FPU, X86_FEATURE_SSE3, X86_FEATURE_MD_CLEAR, ~0u });
    make(b, 8, (const unsigned[]){ X86_FEATURE_FPU, ~0u });
    xc_combine_cpu_featuresets(a, b, out, 8);
    CHECK(has(out, X86_FEATURE_FPU) && !has(out, X86_FEATURE_SSE3) && has(out, X86_FEATURE_MD_CLEAR),
          "8-word combine");
    for (int i = 8; i < MAXW + 4; i++)
        CHECK(out[i] == CANARY, "word %d written past len 8", i);

    /* Longer (24 words): words past those Xen defines are ANDed; nothing past 24 written. */
    for (int i = 0; i < MAXW + 4; i++)
        out[i] = CANARY;
    make(a, 24, (const unsigned[]){ X86_FEATURE_FPU, ~0u });
    make(b, 24, (const unsigned[]){ X86_FEATURE_FPU, ~0u });
    a[22] = 0xf0f0;
    b[22] = 0xff00;
    xc_combine_cpu_featuresets(a, b, out, 24);
    CHECK(out[22] == 0xf000 && has(out, X86_FEATURE_FPU), "24-word combine: word 22 %#x", out[22]);
    for (int i = 24; i < MAXW + 4; i++)
        CHECK(out[i] == CANARY, "word %d written past len 24", i);
    char err[128];
    CHECK(xc_cpu_featuresets_are_compatible(a, b, 24, err) != NULL, "word 22 bits the host lacks are missing");
    CHECK(xc_cpu_featuresets_are_compatible(a, b, 22, err) == NULL, "only len words are read");
    /* In place, as a caller folding a pool may do. */
    xc_combine_cpu_featuresets(a, b, a, 24);
    CHECK(a[22] == 0xf000, "in-place combine");
}

/* Words of a xapi featureset string ("-"-separated hex), zero-extended to MAXW. */
static size_t parse(const char *text, uint32_t *w)
{
    size_t n = 0;
    memset(w, 0, MAXW * sizeof(*w));
    while (*text && n < MAXW) {
        char *end;
        w[n++] = (uint32_t)strtoul(text, &end, 16);
        if (*end != '-')
            break;
        text = end + 1;
    }
    return n;
}

static cpupolicy_featureset *handle(const char *text)
{
    cpupolicy_featureset *set = NULL;
    cpupolicy_status s = cpupolicy_featureset_parse(text, &set);
    CHECK(s == CPUPOLICY_OK, "parse %s: status %d", text, (int)s);
    return set;
}

struct dump {
    char vendor[16], name[128], text[MAXW * 9 + 1];
};

static void real_pairs(const char *path)
{
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "open %s", path);
    if (!f)
        return;
    static struct dump dumps[128];
    size_t n = 0;
    while (n < 128 && fscanf(f, "%15s %127s %576s", dumps[n].vendor, dumps[n].name, dumps[n].text) == 3)
        n++;
    fclose(f);
    CHECK(n >= 20, "only %zu dumps", n);

    size_t pairs = 0, incompatible = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            if (strcmp(dumps[i].vendor, dumps[j].vendor) != 0)
                continue;
            uint32_t a[MAXW], b[MAXW], out[MAXW], back[MAXW];
            size_t la = parse(dumps[i].text, a), lb = parse(dumps[j].text, b);
            size_t len = la > lb ? la : lb; /* xapi zero-extends the shorter */
            xc_combine_cpu_featuresets(a, b, out, len);
            xc_combine_cpu_featuresets(b, a, back, len);
            CHECK(memcmp(out, back, len * sizeof(*out)) == 0, "%s+%s: not symmetric", dumps[i].name, dumps[j].name);
            for (size_t w = 0; w < len; w++) {
                uint32_t extra = out[w] & ~(a[w] | b[w]);
                if (w == X86_FEATURE_RSBA / 32)
                    extra &= ~(1u << (X86_FEATURE_RSBA % 32)); /* RSBA may stand for RRSBA */
                CHECK(extra == 0, "%s+%s: word %zu has bits no host had: %#x", dumps[i].name, dumps[j].name, w,
                      extra);
            }
            char err[128];
            const char *r1 = xc_cpu_featuresets_are_compatible(out, a, len, err);
            CHECK(r1 == NULL, "%s+%s: pool refused by %s: %s", dumps[i].name, dumps[j].name, dumps[i].name, r1);
            const char *r2 = xc_cpu_featuresets_are_compatible(out, b, len, err);
            CHECK(r2 == NULL, "%s+%s: pool refused by %s: %s", dumps[i].name, dumps[j].name, dumps[j].name, r2);

            /* The same through libcpupolicy's C API. */
            cpupolicy_featureset *ha = handle(dumps[i].text), *hb = handle(dumps[j].text), *level = NULL,
                                 *missing = NULL;
            const cpupolicy_featureset *both[2] = { ha, hb };
            CHECK(cpupolicy_featureset_level(both, 2, &level) == CPUPOLICY_OK, "level");
            uint32_t api[MAXW] = { 0 };
            size_t got = 0;
            cpupolicy_featureset_words(level, api, MAXW, &got);
            CHECK(got <= len && memcmp(api, out, got * sizeof(*out)) == 0, "%s+%s: C API and drop-in differ",
                  dumps[i].name, dumps[j].name);

            /* A VM booted on one host checked against the other: each name in the message is a
             * feature the VM has and the host lacks; all of them when it was not cut. */
            const char *r = xc_cpu_featuresets_are_compatible(a, b, len, err);
            CHECK(cpupolicy_featureset_missing(ha, hb, &missing) == CPUPOLICY_OK, "missing");
            size_t names = 0;
            bool cut = false;
            if (r) {
                incompatible++;
                char copy[128];
                snprintf(copy, sizeof(copy), "%s", r);
                for (char *tok = strtok(copy, " "); tok; tok = strtok(NULL, " ")) {
                    if (strcmp(tok, "...") == 0) {
                        cut = true;
                        continue;
                    }
                    bool in_vm = false, in_host = true;
                    CHECK(cpupolicy_featureset_contains(ha, tok, &in_vm) == CPUPOLICY_OK, "name %s", tok);
                    CHECK(cpupolicy_featureset_contains(hb, tok, &in_host) == CPUPOLICY_OK, "name %s", tok);
                    CHECK(in_vm && !in_host, "%s vs %s: %s named but not missing", dumps[i].name, dumps[j].name, tok);
                    names++;
                }
            }
            size_t bits = 0;
            cpupolicy_featureset_words(missing, api, MAXW, &got);
            for (size_t w = 0; w < got; w++)
                bits += (size_t)__builtin_popcount(api[w]);
            CHECK(cut ? names < bits : names == bits, "%s vs %s: %zu names, %zu missing bits", dumps[i].name,
                  dumps[j].name, names, bits);
            cpupolicy_featureset_free(ha);
            cpupolicy_featureset_free(hb);
            cpupolicy_featureset_free(level);
            cpupolicy_featureset_free(missing);
            pairs++;
        }
    }
    CHECK(incompatible > 0, "no pair was incompatible");
    printf("xapi_featuresets: %zu same-vendor pairs of real dumps, %zu incompatible one way\n", pairs, incompatible);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "absent") == 0) {
        CHECK(xc_combine_cpu_featuresets == NULL && xc_cpu_featuresets_are_compatible == NULL,
              "without the library the weak symbols must stay NULL");
        if (!failures)
            printf("xapi_featuresets: symbols absent, as with upstream libxc\n");
        return failures ? 1 : 0;
    }
    if (!xc_combine_cpu_featuresets || !xc_cpu_featuresets_are_compatible) {
        fprintf(stderr, "xapi_featuresets: the weak symbols are not resolved: is libcpupolicy-xc linked?\n");
        return 1;
    }
    if (argc == 4 && strcmp(argv[1], "combine") == 0) {
        uint32_t a[MAXW], b[MAXW], out[MAXW];
        size_t la = parse(argv[2], a), lb = parse(argv[3], b), len = la > lb ? la : lb;
        xc_combine_cpu_featuresets(a, b, out, len);
        for (size_t i = 0; i < len; i++)
            printf("%s%08x", i ? "-" : "", out[i]);
        printf("\n");
        return 0;
    }
    rsba_rules();
    and_or_rules();
    compatibility();
    lengths();
    if (argc > 1)
        real_pairs(argv[1]);
    if (failures) {
        fprintf(stderr, "xapi_featuresets: %d checks failed\n", failures);
        return 1;
    }
    printf("xapi_featuresets: all checks passed\n");
    return 0;
}
