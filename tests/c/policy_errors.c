/* The error paths of the policy, host, pool, check, topology and Xen functions: NULL pointers,
 * short buffers, malformed input, wrong handle types, out-of-range enumerations, documents of
 * the other kind; and the round trips that make the error paths meaningful.
 * Prints "policy_errors: all checks passed" and exits 0, or names the failed checks and exits 1. */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cpupolicy.h>

static int failures;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

static const char *last_error(void)
{
    static char buf[2048];
    if (cpupolicy_last_error(buf, sizeof(buf), NULL) != CPUPOLICY_OK)
        return "<last error too long>";
    return buf;
}

/* Sets `var` to the text a size-query function produces (a new buffer the caller frees), or NULL. */
#define TEXT_OF(var, call_with)                                                           \
    do {                                                                                  \
        size_t n_ = 0;                                                                    \
        (var) = NULL;                                                                     \
        if (call_with(NULL, 0, &n_) == CPUPOLICY_OK && ((var) = malloc(n_)) != NULL &&    \
            call_with((var), n_, NULL) != CPUPOLICY_OK) {                                 \
            free(var);                                                                    \
            (var) = NULL;                                                                 \
        }                                                                                 \
    } while (0)

/* A small policy of a vendor: leaf 0 names it, leaf 1 has a signature and some features. */
static cpupolicy_policy *small_policy(int amd)
{
    cpupolicy_policy *p = NULL;
    CHECK(cpupolicy_policy_new(&p) == CPUPOLICY_OK);
    cpupolicy_cpuid_leaf leaves[] = {
        amd ? (cpupolicy_cpuid_leaf){ 0, CPUPOLICY_NO_SUBLEAF, 0xd, 0x68747541, 0x444d4163, 0x69746e65 }
            : (cpupolicy_cpuid_leaf){ 0, CPUPOLICY_NO_SUBLEAF, 0xd, 0x756e6547, 0x6c65746e, 0x49656e69 },
        { 1, CPUPOLICY_NO_SUBLEAF, 0x000306c3, 0x00020800, 0x96002201, 0x178bfbfd },
        { 7, 0, 0, 0x00000209, 0, 0 },
        { 0x80000000, CPUPOLICY_NO_SUBLEAF, 0x80000008, 0, 0, 0 },
        { 0x80000008, CPUPOLICY_NO_SUBLEAF, 0x00003027, 0, 0, 0 },
    };
    for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++)
        CHECK(cpupolicy_policy_set_cpuid(p, &leaves[i]) == CPUPOLICY_OK);
    return p;
}

/* A host whose PV and HVM policies are all `p`. */
static cpupolicy_host *host_of(const cpupolicy_policy *p)
{
    cpupolicy_host *h = NULL;
    CHECK(cpupolicy_host_new(&h) == CPUPOLICY_OK);
    const cpupolicy_system_policy all[] = { CPUPOLICY_SYSTEM_HOST, CPUPOLICY_SYSTEM_PV_MAX, CPUPOLICY_SYSTEM_PV_DEFAULT,
                                            CPUPOLICY_SYSTEM_HVM_MAX, CPUPOLICY_SYSTEM_HVM_DEFAULT };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        CHECK(cpupolicy_host_set_policy(h, all[i], p) == CPUPOLICY_OK);
    return h;
}

static void policies(void)
{
    cpupolicy_policy *p = small_policy(0), *q = NULL;

    /* NULL arguments name the argument; out-pointers stay untouched. */
    q = (cpupolicy_policy *)0x1;
    CHECK(cpupolicy_policy_parse(NULL, &q) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "text is NULL") != NULL);
    CHECK(q == (cpupolicy_policy *)0x1);
    CHECK(cpupolicy_policy_parse("{}", NULL) != CPUPOLICY_OK);
    CHECK(cpupolicy_policy_clone(NULL, &q) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_policy_clone(p, NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_policy_free(NULL) == CPUPOLICY_OK);
    CHECK(cpupolicy_policy_set_cpuid(p, NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_policy_cpuid(p, 1, CPUPOLICY_NO_SUBLEAF, NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_policy_msr(p, 0xce, NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_policy_equal(p, NULL, NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_policy_from_xen(NULL, 3, NULL, 0, NULL, &q) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "leaves is NULL") != NULL);
    CHECK(cpupolicy_policy_diff(p, NULL, NULL, 0, NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "b is NULL") != NULL);

    /* Malformed input names what is wrong. */
    CHECK(cpupolicy_policy_parse("{\"format\": \"cpupolicy-policy\", \"version\": 1, \"cpuid\": [{\"leaf\": \"zz\"}]}",
                                 &q) == CPUPOLICY_PARSE_ERROR);
    CHECK(q == (cpupolicy_policy *)0x1);
    CHECK(cpupolicy_policy_parse("hello", &q) == CPUPOLICY_PARSE_ERROR);
    CHECK(strstr(last_error(), "cannot tell the format") != NULL);
    CHECK(cpupolicy_policy_parse("\xff\xfe", &q) == CPUPOLICY_INVALID_UTF8);

    /* JSON round trip. */
    size_t needed = 0;
    CHECK(cpupolicy_policy_to_json(p, NULL, 0, &needed) == CPUPOLICY_OK);
    char *text = malloc(needed);
    char small[16];
    memset(small, 'X', sizeof(small));
    CHECK(cpupolicy_policy_to_json(p, small, sizeof(small), NULL) == CPUPOLICY_BUFFER_TOO_SMALL);
    for (size_t i = 0; i < sizeof(small); i++)
        CHECK(small[i] == 'X');
    CHECK(cpupolicy_policy_to_json(p, NULL, 4, &needed) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_policy_to_json(p, text, needed, NULL) == CPUPOLICY_OK);
    q = NULL;
    CHECK(cpupolicy_policy_parse(text, &q) == CPUPOLICY_OK);
    bool equal = false;
    CHECK(cpupolicy_policy_equal(p, q, &equal) == CPUPOLICY_OK && equal);
    free(text);
    cpupolicy_policy_free(q);

    /* Xen's arrays: size query, short buffer, round trip; the checks Xen makes. */
    size_t nr_leaves = 0, nr_msrs = 0;
    CHECK(cpupolicy_policy_to_xen_leaves(p, NULL, NULL, 0, &nr_leaves) == CPUPOLICY_OK);
    CHECK(nr_leaves > 5); /* zero leaves are serialised too */
    CHECK(cpupolicy_policy_to_xen_msrs(p, "4.14.0", NULL, 0, &nr_msrs) == CPUPOLICY_OK && nr_msrs == 1);
    CHECK(cpupolicy_policy_to_xen_msrs(p, NULL, NULL, 0, &nr_msrs) == CPUPOLICY_OK && nr_msrs == 2);
    cpupolicy_cpuid_leaf *leaves = calloc(nr_leaves + 1, sizeof(*leaves));
    cpupolicy_msr_entry msrs[2];
    leaves[nr_leaves - 1].leaf = 0xdeadbeef;
    CHECK(cpupolicy_policy_to_xen_leaves(p, NULL, leaves, nr_leaves - 1, &needed) == CPUPOLICY_BUFFER_TOO_SMALL);
    CHECK(needed == nr_leaves && leaves[nr_leaves - 1].leaf == 0xdeadbeef);
    CHECK(cpupolicy_policy_to_xen_leaves(p, NULL, leaves, nr_leaves, NULL) == CPUPOLICY_OK);
    CHECK(cpupolicy_policy_to_xen_msrs(p, NULL, msrs, 2, NULL) == CPUPOLICY_OK);
    q = NULL;
    CHECK(cpupolicy_policy_from_xen(leaves, nr_leaves, msrs, 2, "4.20.3", &q) == CPUPOLICY_OK);
    CHECK(cpupolicy_policy_equal(p, q, &equal) == CPUPOLICY_OK && equal);
    cpupolicy_policy_free(q);
    q = (cpupolicy_policy *)0x1;
    msrs[1].flags = 1;
    CHECK(cpupolicy_policy_from_xen(leaves, nr_leaves, msrs, 2, NULL, &q) == CPUPOLICY_POLICY_REJECTED);
    CHECK(strstr(last_error(), "MSR 0x10a has flags 0x1") != NULL);
    msrs[1].flags = 0;
    CHECK(cpupolicy_policy_from_xen(leaves, nr_leaves, msrs, 2, "4.14.0", &q) == CPUPOLICY_POLICY_REJECTED);
    CHECK(strstr(last_error(), "2 MSRs given") != NULL);
    cpupolicy_cpuid_leaf beyond = { 0x1f, 0, 1, 2, 3, 4 };
    CHECK(cpupolicy_policy_from_xen(&beyond, 1, NULL, 0, NULL, &q) == CPUPOLICY_POLICY_REJECTED);
    CHECK(strstr(last_error(), "leaf 0x0000001f sub-leaf 0x00000000") != NULL);
    /* The same in Xen's terms: ERANGE naming the leaf and sub-leaf, no MSR. */
    cpupolicy_rejection why = { 0, 0, 0, 0 };
    CHECK(cpupolicy_last_rejection(&why) == CPUPOLICY_OK);
    CHECK(why.error_number == 34 && why.leaf == 0x1f && why.subleaf == 0 && why.msr == CPUPOLICY_REJECTION_NONE);
    CHECK(cpupolicy_last_rejection(NULL) == CPUPOLICY_INVALID_ARGUMENT);
    /* Reading the rejection leaves the message, and reading either leaves the other. */
    CHECK(strstr(last_error(), "leaf 0x0000001f sub-leaf 0x00000000") != NULL);
    CHECK(cpupolicy_last_rejection(&why) == CPUPOLICY_OK && why.leaf == 0x1f);
    /* A count beyond Xen's format is refused before the array is read (E2BIG, as Xen does). */
    CHECK(cpupolicy_policy_from_xen(&beyond, SIZE_MAX, NULL, 0, NULL, &q) == CPUPOLICY_POLICY_REJECTED);
    CHECK(strstr(last_error(), "at most") != NULL);
    CHECK(cpupolicy_last_rejection(&why) == CPUPOLICY_OK && why.error_number == 7 && why.leaf == CPUPOLICY_REJECTION_NONE);
    CHECK(cpupolicy_policy_from_xen(&beyond, 0, msrs, SIZE_MAX, NULL, &q) == CPUPOLICY_POLICY_REJECTED);
    CHECK(cpupolicy_policy_from_xen(leaves, nr_leaves, msrs, 2, "four", &q) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "'four'") != NULL);
    /* A failure that refused no policy leaves nothing to report, and its message stays. */
    CHECK(cpupolicy_policy_from_xen(leaves, nr_leaves, msrs, 2, "four", &q) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_last_rejection(&why) == CPUPOLICY_NOT_AVAILABLE);
    CHECK(strstr(last_error(), "'four'") != NULL);
    CHECK(cpupolicy_policy_from_xen(leaves, nr_leaves, msrs, 2, "4.13", &q) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(q == (cpupolicy_policy *)0x1);
    free(leaves);

    /* A leaf Xen's format cannot carry is held, and reported, not lost. */
    CHECK(cpupolicy_policy_set_cpuid(p, &beyond) == CPUPOLICY_OK);
#define DROPPED(b, c, n) cpupolicy_policy_xen_dropped(p, NULL, b, c, n)
    TEXT_OF(text, DROPPED);
    CHECK(text && strstr(text, "leaf 0x0000001f:0x0") != NULL);
    free(text);
    cpupolicy_cpuid_leaf zero = { 0x1f, 0, 0, 0, 0, 0 }, read;
    CHECK(cpupolicy_policy_set_cpuid(p, &zero) == CPUPOLICY_OK);
    CHECK(cpupolicy_policy_cpuid(p, 0x1f, 0, &read) == CPUPOLICY_OK && read.a == 0 && read.subleaf == 0);
    TEXT_OF(text, DROPPED);
    CHECK(text && strcmp(text, "") == 0);
    free(text);

    /* A leaf libvirt's format cannot carry is refused by name, and nothing is written: leaf
     * 0x80000001 held both plain and as sub-leaf 0 would be written twice with ecx_in 0. */
    cpupolicy_cpuid_leaf ext_plain = { 0x80000001, CPUPOLICY_NO_SUBLEAF, 1, 0, 0, 0 };
    cpupolicy_cpuid_leaf ext_sub0 = { 0x80000001, 0, 2, 0, 0, 0 };
    cpupolicy_policy *odd = NULL;
    CHECK(cpupolicy_policy_new(&odd) == CPUPOLICY_OK);
    CHECK(cpupolicy_policy_set_cpuid(odd, &ext_plain) == CPUPOLICY_OK);
    size_t xml_needed = 7;
    CHECK(cpupolicy_policy_to_libvirt(odd, NULL, 0, &xml_needed) == CPUPOLICY_OK && xml_needed > 1);
    CHECK(cpupolicy_policy_set_cpuid(odd, &ext_sub0) == CPUPOLICY_OK);
    xml_needed = 7;
    CHECK(cpupolicy_policy_to_libvirt(odd, NULL, 0, &xml_needed) == CPUPOLICY_DOES_NOT_FIT);
    CHECK(xml_needed == 7);
    CHECK(strstr(last_error(), "leaf 0x80000001:0x0 cannot be written as a libvirt dump") != NULL);
    cpupolicy_policy_free(odd);

    /* Typed fields: out of range, read-only, too wide. */
    uint64_t value = 42;
    CHECK(cpupolicy_policy_field(p, CPUPOLICY_FIELD_FAMILY, &value) == CPUPOLICY_OK && value == 6);
    CHECK(cpupolicy_policy_field(p, CPUPOLICY_FIELD_MODEL, &value) == CPUPOLICY_OK && value == 0x3c);
    CHECK(cpupolicy_policy_field(p, CPUPOLICY_FIELD_MAX_PHYS_ADDR_BITS, &value) == CPUPOLICY_OK && value == 39);
    value = 42;
    CHECK(cpupolicy_policy_field(p, 1000, &value) == CPUPOLICY_INVALID_ARGUMENT && value == 42);
    CHECK(strstr(last_error(), "field 1000") != NULL);
    CHECK(cpupolicy_policy_set_field(p, CPUPOLICY_FIELD_FAMILY, 7) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "read-only") != NULL);
    CHECK(cpupolicy_policy_set_field(p, CPUPOLICY_FIELD_MAX_PHYS_ADDR_BITS, 256) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_policy_set_field(p, CPUPOLICY_FIELD_CPUID_FAULTING, 2) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_policy_set_field(p, CPUPOLICY_FIELD_CPUID_FAULTING, 1) == CPUPOLICY_OK);
    CHECK(cpupolicy_policy_msr(p, 0xce, &value) == CPUPOLICY_OK && value == 0x80000000u);
    CHECK(cpupolicy_policy_set_msr(p, 0xce, 0) == CPUPOLICY_OK);
#define VENDOR(b, c, n) cpupolicy_policy_vendor(p, b, c, n)
    TEXT_OF(text, VENDOR);
    CHECK(text && strcmp(text, "Intel") == 0);
    free(text);

    /* The featureset view; a featureset longer than a policy's words does not fit. */
    cpupolicy_featureset *fs = NULL, *too_long = NULL;
    CHECK(cpupolicy_policy_featureset(p, &fs) == CPUPOLICY_OK);
    bool present = false;
    CHECK(cpupolicy_featureset_contains(fs, "avx", &present) == CPUPOLICY_OK && present);
    uint32_t words[40] = { 0 };
    words[39] = 1;
    CHECK(cpupolicy_featureset_from_words(words, 40, &too_long) == CPUPOLICY_OK);
    CHECK(cpupolicy_policy_set_featureset(p, too_long) == CPUPOLICY_DOES_NOT_FIT);
    CHECK(cpupolicy_policy_set_featureset(p, NULL) == CPUPOLICY_INVALID_ARGUMENT);
    /* Wrong handle types, both ways round. */
    CHECK(cpupolicy_policy_set_featureset((cpupolicy_policy *)fs, fs) == CPUPOLICY_WRONG_HANDLE);
    CHECK(strstr(last_error(), "expected a policy, got a handle of another type") != NULL);
    CHECK(cpupolicy_policy_featureset((const cpupolicy_policy *)too_long, &fs) == CPUPOLICY_WRONG_HANDLE);
    CHECK(cpupolicy_featureset_words((const cpupolicy_featureset *)p, NULL, 0, &needed) == CPUPOLICY_WRONG_HANDLE);
    uint32_t not_a_handle[8] = { 0x12345678 };
    CHECK(cpupolicy_policy_to_json((const cpupolicy_policy *)not_a_handle, NULL, 0, &needed) == CPUPOLICY_WRONG_HANDLE);
    cpupolicy_featureset_free(too_long);

    /* Diff names the differences. */
    CHECK(cpupolicy_featureset_set(fs, "avx", false) == CPUPOLICY_OK);
    cpupolicy_policy *no_avx = NULL;
    CHECK(cpupolicy_policy_clone(p, &no_avx) == CPUPOLICY_OK);
    CHECK(cpupolicy_policy_set_featureset(no_avx, fs) == CPUPOLICY_OK);
#define DIFF(b, c, n) cpupolicy_policy_diff(p, no_avx, b, c, n)
    TEXT_OF(text, DIFF);
    CHECK(text && strstr(text, "features only in A: avx\n") != NULL);
    free(text);

    /* libvirt-style comparison, host first. */
    cpupolicy_compare_result result = 99;
    CHECK(cpupolicy_compare(p, p, &result) == CPUPOLICY_OK && result == CPUPOLICY_COMPARE_IDENTICAL);
    CHECK(cpupolicy_compare(p, no_avx, &result) == CPUPOLICY_OK && result == CPUPOLICY_COMPARE_SUPERSET);
    CHECK(cpupolicy_compare(no_avx, p, &result) == CPUPOLICY_OK && result == CPUPOLICY_COMPARE_INCOMPATIBLE);
    CHECK(cpupolicy_compare(no_avx, p, NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_compare((const cpupolicy_policy *)fs, p, &result) == CPUPOLICY_WRONG_HANDLE);

    /* The check names the feature; item indexes and parts are checked. */
    cpupolicy_check *check = NULL;
    CHECK(cpupolicy_check_policy(p, no_avx, &check) == CPUPOLICY_OK);
    bool compatible = true;
    CHECK(cpupolicy_check_compatible(check, &compatible) == CPUPOLICY_OK && !compatible);
    size_t count = 0;
    CHECK(cpupolicy_check_count(check, CPUPOLICY_CHECK_MISMATCHES, &count) == CPUPOLICY_OK && count == 1);
    CHECK(cpupolicy_check_count(check, 7, &count) == CPUPOLICY_INVALID_ARGUMENT);
    char name[8];
    CHECK(cpupolicy_check_item(check, CPUPOLICY_CHECK_MISMATCHES, 0, CPUPOLICY_ITEM_FEATURE, name, sizeof(name), NULL)
          == CPUPOLICY_OK);
    CHECK(strcmp(name, "avx") == 0);
    CHECK(cpupolicy_check_item(check, CPUPOLICY_CHECK_MISMATCHES, 0, CPUPOLICY_ITEM_MESSAGE, name, sizeof(name),
                               &needed) == CPUPOLICY_BUFFER_TOO_SMALL);
    CHECK(needed == strlen("feature avx: the VM saw it, the host cannot give it") + 1);
    CHECK(cpupolicy_check_item(check, CPUPOLICY_CHECK_MISMATCHES, 1, CPUPOLICY_ITEM_KIND, NULL, 0, &needed)
          == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "index 1") != NULL);
    CHECK(cpupolicy_check_item(check, CPUPOLICY_CHECK_MISMATCHES, 0, 9, NULL, 0, &needed) == CPUPOLICY_INVALID_ARGUMENT);
#define CHECK_TEXT(b, c, n) cpupolicy_check_to_text(check, b, c, n)
    TEXT_OF(text, CHECK_TEXT);
    CHECK(text && strcmp(text, "mismatch: feature avx: the VM saw it, the host cannot give it\n") == 0);
    free(text);
    CHECK(cpupolicy_check_compatible((const cpupolicy_check *)p, &compatible) == CPUPOLICY_WRONG_HANDLE);
    CHECK(cpupolicy_check_free((cpupolicy_check *)p) == CPUPOLICY_WRONG_HANDLE);
    cpupolicy_check_free(check);
    cpupolicy_policy_free(no_avx);

    /* One policy is not a host's policies, and the reverse. */
    cpupolicy_host *h = host_of(p), *h2 = NULL;
#define HOST_TEXT(b, c, n) cpupolicy_host_to_xen_cpuid(h, b, c, n)
    TEXT_OF(text, HOST_TEXT);
    CHECK(text && strstr(text, "Xen reports there are maximum 120 leaves and 2 MSRs\n") == text);
    q = (cpupolicy_policy *)0x1;
    CHECK(cpupolicy_policy_parse(text, &q) == CPUPOLICY_WRONG_DOCUMENT);
    CHECK(strstr(last_error(), "cpupolicy_host_parse") != NULL);
    CHECK(q == (cpupolicy_policy *)0x1);
    CHECK(cpupolicy_host_parse(text, &h2) == CPUPOLICY_OK);
    /* Corrupt one register: the error names the line. */
    char *leaf1 = strstr(text, "\n  00000001:ffffffff -> ");
    CHECK(leaf1 != NULL);
    if (leaf1) {
        leaf1[strlen("\n  00000001:ffffffff -> ")] = 'z';
        CHECK(cpupolicy_host_parse(text, &h2) == CPUPOLICY_PARSE_ERROR);
        CHECK(strstr(last_error(), "xen-cpuid -p output: line ") != NULL);
    }
    free(text);
#define POLICY_JSON(b, c, n) cpupolicy_policy_to_json(p, b, c, n)
    TEXT_OF(text, POLICY_JSON);
    cpupolicy_host *never = (cpupolicy_host *)0x1;
    CHECK(cpupolicy_host_parse(text, &never) == CPUPOLICY_WRONG_DOCUMENT && never == (cpupolicy_host *)0x1);
    CHECK(strstr(last_error(), "cpupolicy_policy_parse") != NULL);
    free(text);
#define DOMAIN_TEXT(b, c, n) cpupolicy_policy_to_xen_cpuid(p, 7, "4.17", b, c, n)
    TEXT_OF(text, DOMAIN_TEXT);
    CHECK(text && strncmp(text, "Domain 7 policy: ", 17) == 0);
    CHECK(cpupolicy_host_parse(text, &never) == CPUPOLICY_WRONG_DOCUMENT);
    q = NULL;
    CHECK(cpupolicy_policy_parse(text, &q) == CPUPOLICY_OK);
    cpupolicy_policy_free(q);
    free(text);
    CHECK(cpupolicy_host_parse("", &never) == CPUPOLICY_PARSE_ERROR);

    /* Host policies: absent ones and out-of-range names. */
    cpupolicy_host *empty = NULL;
    CHECK(cpupolicy_host_new(&empty) == CPUPOLICY_OK);
    q = (cpupolicy_policy *)0x1;
    CHECK(cpupolicy_host_policy(empty, CPUPOLICY_SYSTEM_RAW, &q) == CPUPOLICY_NOT_AVAILABLE);
    CHECK(strstr(last_error(), "no raw policy") != NULL);
    CHECK(cpupolicy_host_policy(h, 6, &q) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(q == (cpupolicy_policy *)0x1);
    CHECK(cpupolicy_host_set_policy(h2, CPUPOLICY_SYSTEM_RAW, NULL) == CPUPOLICY_OK);
    CHECK(cpupolicy_host_set_policy(h2, 99, p) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_host_set_policy(h2, CPUPOLICY_SYSTEM_RAW, (const cpupolicy_policy *)h) == CPUPOLICY_WRONG_HANDLE);
#define VERSION(b, c, n) cpupolicy_host_xen_version(h, b, c, n)
    TEXT_OF(text, VERSION);
    CHECK(text == NULL);
    CHECK(cpupolicy_host_xen_version(h, NULL, 0, &needed) == CPUPOLICY_NOT_AVAILABLE);

    /* Levelling: no hosts, a host without the kind's policies, mixed vendors, bad flags. */
    cpupolicy_pool *pool = (cpupolicy_pool *)0x1;
    CHECK(cpupolicy_level(NULL, NULL, 0, CPUPOLICY_GUEST_PV, 0, &pool) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "at least one host") != NULL);
    const cpupolicy_host *with_empty[] = { h, empty };
    const char *names[] = { "good", "bare" };
    CHECK(cpupolicy_level(with_empty, names, 2, CPUPOLICY_GUEST_PV, 0, &pool) == CPUPOLICY_NOT_AVAILABLE);
    CHECK(strstr(last_error(), "host bare has no pv_default policy") != NULL);
    CHECK(cpupolicy_level(with_empty, NULL, SIZE_MAX, CPUPOLICY_GUEST_PV, 0, &pool) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "at most") != NULL);
    const cpupolicy_host *with_null[] = { h, NULL };
    CHECK(cpupolicy_level(with_null, NULL, 2, CPUPOLICY_GUEST_PV, 0, &pool) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "hosts[1] is NULL") != NULL);
    const char *null_name[] = { "good", NULL };
    const cpupolicy_host *two[] = { h, h2 };
    CHECK(cpupolicy_level(two, null_name, 2, CPUPOLICY_GUEST_PV, 0, &pool) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "names[1] is NULL") != NULL);
    CHECK(cpupolicy_level(two, NULL, 2, 3, 0, &pool) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_level(two, NULL, 2, CPUPOLICY_GUEST_PV, 0x80, &pool) == CPUPOLICY_INVALID_ARGUMENT);
    const cpupolicy_host *wrong[] = { h, (const cpupolicy_host *)p };
    CHECK(cpupolicy_level(wrong, NULL, 2, CPUPOLICY_GUEST_PV, 0, &pool) == CPUPOLICY_WRONG_HANDLE);
    CHECK(strstr(last_error(), "hosts[1]: expected a host") != NULL);
    CHECK(pool == (cpupolicy_pool *)0x1);
    cpupolicy_policy *amd = small_policy(1);
    cpupolicy_host *amd_host = host_of(amd);
    const cpupolicy_host *mixed[] = { h, amd_host };
    const char *mixed_names[] = { "intel-host", "amd-host" };
    CHECK(cpupolicy_level(mixed, mixed_names, 2, CPUPOLICY_GUEST_HVM, 0, &pool) == CPUPOLICY_MIXED_VENDORS);
    CHECK(strstr(last_error(), "intel-host") != NULL && strstr(last_error(), "amd-host") != NULL);
    CHECK(cpupolicy_level(mixed, mixed_names, 2, CPUPOLICY_GUEST_HVM, CPUPOLICY_LEVEL_CROSS_VENDOR, &pool)
          == CPUPOLICY_OK);
    /* Explaining was not asked for. */
    CHECK(cpupolicy_pool_explain(pool, NULL, 0, &needed) == CPUPOLICY_NOT_AVAILABLE);
    CHECK(strstr(last_error(), "CPUPOLICY_LEVEL_EXPLAIN") != NULL);
    CHECK(cpupolicy_pool_policy(pool, 2, &q) == CPUPOLICY_INVALID_ARGUMENT);
    q = NULL;
    CHECK(cpupolicy_pool_policy(pool, CPUPOLICY_POOL_ACCEPTANCE, &q) == CPUPOLICY_OK);
    cpupolicy_policy_free(q);
#define POOL_JSON(b, c, n) cpupolicy_pool_to_json(pool, b, c, n)
    TEXT_OF(text, POOL_JSON);
    CHECK(text && strstr(text, "\"hosts\": [\n    \"intel-host\",\n    \"amd-host\"\n  ]") != NULL);
    free(text);
    CHECK(cpupolicy_pool_free((cpupolicy_pool *)h) == CPUPOLICY_WRONG_HANDLE);
    cpupolicy_pool_free(pool);
    CHECK(cpupolicy_level(two, NULL, 2, CPUPOLICY_GUEST_PV, CPUPOLICY_LEVEL_EXPLAIN, &pool) == CPUPOLICY_OK);
#define EXPLAIN(b, c, n) cpupolicy_pool_explain(pool, b, c, n)
    TEXT_OF(text, EXPLAIN);
    CHECK(text && strstr(text, "default: ") == text);
    free(text);
    cpupolicy_pool_free(pool);

    /* Baseline of single policies. */
    const cpupolicy_policy *both[] = { p, NULL };
    CHECK(cpupolicy_baseline(both, 2, &q) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "policies[1] is NULL") != NULL);
    CHECK(cpupolicy_baseline(NULL, 0, &q) == CPUPOLICY_INVALID_ARGUMENT);
    const cpupolicy_policy *vendors[] = { p, amd };
    CHECK(cpupolicy_baseline(vendors, 2, &q) == CPUPOLICY_MIXED_VENDORS);
    const cpupolicy_policy *same[] = { p, p };
    CHECK(cpupolicy_baseline(same, 2, &q) == CPUPOLICY_OK);
    CHECK(cpupolicy_compare(p, q, &result) == CPUPOLICY_OK && result != CPUPOLICY_COMPARE_INCOMPATIBLE);
    cpupolicy_policy_free(q);

    /* Migration check against a host. */
    CHECK(cpupolicy_check_migration(p, empty, CPUPOLICY_GUEST_PV, &check) == CPUPOLICY_NOT_AVAILABLE);
    CHECK(cpupolicy_check_migration(p, h, 17, &check) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_check_migration(p, amd_host, CPUPOLICY_GUEST_HVM, &check) == CPUPOLICY_OK);
    CHECK(cpupolicy_check_item(check, CPUPOLICY_CHECK_MISMATCHES, 0, CPUPOLICY_ITEM_KIND, name, sizeof(name), NULL)
          == CPUPOLICY_OK);
    CHECK(strcmp(name, "vendor") == 0);
    CHECK(cpupolicy_check_item(check, CPUPOLICY_CHECK_MISMATCHES, 0, CPUPOLICY_ITEM_FEATURE, name, sizeof(name), NULL)
          == CPUPOLICY_OK);
    CHECK(strcmp(name, "") == 0);
    cpupolicy_check_free(check);

    /* Legacy synthesis needs to know the restoring Xen. */
    CHECK(cpupolicy_synthesise_legacy(h, CPUPOLICY_GUEST_PV, NULL, &q) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "does not record its version") != NULL);
    CHECK(cpupolicy_synthesise_legacy(h, CPUPOLICY_GUEST_PV, "x.y", &q) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_synthesise_legacy(empty, CPUPOLICY_GUEST_PV, "4.20", &q) == CPUPOLICY_NOT_AVAILABLE);
    q = NULL;
    CHECK(cpupolicy_synthesise_legacy(h, CPUPOLICY_GUEST_HVM, "4.17.3", &q) == CPUPOLICY_OK);
    CHECK(cpupolicy_policy_field(q, CPUPOLICY_FIELD_LEAF7_MAX_SUBLEAF, &value) == CPUPOLICY_OK && value == 0);
    cpupolicy_policy_free(q);

    /* Derivation refuses what Xen could not boot on. */
    cpupolicy_host *derived = (cpupolicy_host *)0x1;
    cpupolicy_policy *bare = NULL;
    CHECK(cpupolicy_policy_new(&bare) == CPUPOLICY_OK);
    CHECK(cpupolicy_derive(bare, CPUPOLICY_HVM_DETECT, &derived) == CPUPOLICY_UNSUPPORTED_CPU);
    CHECK(strstr(last_error(), "no leaf 0x0") != NULL);
    CHECK(cpupolicy_derive(p, 42, &derived) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_derive(p, CPUPOLICY_HVM_HAP, &derived) == CPUPOLICY_UNSUPPORTED_CPU);
    CHECK(strstr(last_error(), "neither VMX nor SVM") != NULL);
    CHECK(cpupolicy_derive(NULL, CPUPOLICY_HVM_DETECT, &derived) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(derived == (cpupolicy_host *)0x1);
    cpupolicy_policy_free(bare);

    cpupolicy_host_free(amd_host);
    cpupolicy_policy_free(amd);
    cpupolicy_host_free(empty);
    cpupolicy_host_free(h2);
    cpupolicy_host_free(h);
    cpupolicy_featureset_free(fs);
    cpupolicy_policy_free(p);
}

static void topologies(void)
{
    cpupolicy_shape shape = { 2, 1, 1, 1, 3, 2 };
    cpupolicy_topology *t = (cpupolicy_topology *)0x1;
    CHECK(cpupolicy_topology_new(NULL, CPUPOLICY_VENDOR_INTEL, CPUPOLICY_SCHEME_MODERN, true, &t)
          == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_topology_new(&shape, 3, CPUPOLICY_SCHEME_MODERN, true, &t) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_topology_new(&shape, CPUPOLICY_VENDOR_INTEL, 2, true, &t) == CPUPOLICY_INVALID_ARGUMENT);
    cpupolicy_shape zero = shape;
    zero.cores_per_module = 0;
    CHECK(cpupolicy_topology_new(&zero, CPUPOLICY_VENDOR_INTEL, CPUPOLICY_SCHEME_MODERN, true, &t)
          == CPUPOLICY_INVALID_TOPOLOGY);
    CHECK(strstr(last_error(), "cores") != NULL);
    cpupolicy_shape large = { 2, 1, 1, 1, 80, 2 };
    CHECK(cpupolicy_topology_new(&large, CPUPOLICY_VENDOR_INTEL, CPUPOLICY_SCHEME_MODERN, false, &t)
          == CPUPOLICY_INVALID_TOPOLOGY);
    CHECK(strstr(last_error(), "x2APIC") != NULL);
    CHECK(t == (cpupolicy_topology *)0x1);
    cpupolicy_shape modules = { 1, 1, 1, 2, 2, 2 };
    CHECK(cpupolicy_topology_new(&modules, CPUPOLICY_VENDOR_AMD, CPUPOLICY_SCHEME_MODERN, true, &t)
          == CPUPOLICY_INVALID_TOPOLOGY);

    CHECK(cpupolicy_topology_new(&shape, CPUPOLICY_VENDOR_INTEL, CPUPOLICY_SCHEME_MODERN, true, &t) == CPUPOLICY_OK);
    uint32_t ids[12];
    size_t needed = 0;
    ids[4] = 0xdead;
    CHECK(cpupolicy_topology_apic_ids(t, ids, 4, &needed) == CPUPOLICY_BUFFER_TOO_SMALL && needed == 12);
    CHECK(ids[4] == 0xdead);
    CHECK(cpupolicy_topology_apic_ids(t, ids, 12, NULL) == CPUPOLICY_OK);
    CHECK(ids[5] == 5 && ids[6] == 8 && ids[11] == 13); /* QEMU's gap between packages */
    cpupolicy_vcpu_info info;
    CHECK(cpupolicy_topology_vcpu(t, 12, &info) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "no vCPU 12") != NULL);
    CHECK(cpupolicy_topology_vcpu(t, 7, &info) == CPUPOLICY_OK && info.package == 1 && info.thread == 1);
    CHECK(cpupolicy_topology_vcpu_leaves(t, NULL, 12, NULL, 0, &needed) == CPUPOLICY_INVALID_ARGUMENT);
    uint32_t vp[12] = { 0 };
    CHECK(cpupolicy_topology_set_vp_indices(t, vp, 12) == CPUPOLICY_INVALID_TOPOLOGY);
    CHECK(strstr(last_error(), "VP index 0") != NULL);
    CHECK(cpupolicy_topology_set_vp_indices(t, vp, 3) == CPUPOLICY_INVALID_TOPOLOGY);
    CHECK(cpupolicy_topology_set_vp_indices(t, NULL, 12) == CPUPOLICY_INVALID_ARGUMENT);
    for (uint32_t i = 0; i < 12; i++)
        vp[i] = 100 - i;
    CHECK(cpupolicy_topology_set_vp_indices(t, vp, 12) == CPUPOLICY_OK);
    CHECK(cpupolicy_topology_vcpu(t, 7, &info) == CPUPOLICY_OK && info.vp_index == 93);

    /* Applying: wrong handles, then Xen's format refusing leaf 0x1f (modules need it). */
    cpupolicy_policy *p = small_policy(0);
    CHECK(cpupolicy_topology_apply((const cpupolicy_topology *)p, p, NULL) == CPUPOLICY_WRONG_HANDLE);
    CHECK(cpupolicy_topology_apply(t, (cpupolicy_policy *)t, NULL) == CPUPOLICY_WRONG_HANDLE);
    CHECK(cpupolicy_topology_apply(t, p, "4.0") == CPUPOLICY_INVALID_ARGUMENT);
    cpupolicy_topology *mod = NULL;
    CHECK(cpupolicy_topology_new(&modules, CPUPOLICY_VENDOR_INTEL, CPUPOLICY_SCHEME_MODERN, true, &mod)
          == CPUPOLICY_OK);
    cpupolicy_policy *before = NULL;
    CHECK(cpupolicy_policy_clone(p, &before) == CPUPOLICY_OK);
    CHECK(cpupolicy_topology_apply(mod, p, "4.20") == CPUPOLICY_INVALID_TOPOLOGY);
    CHECK(strstr(last_error(), "leaf 0x1f") != NULL);
    bool equal = false;
    CHECK(cpupolicy_policy_equal(p, before, &equal) == CPUPOLICY_OK && equal); /* all or nothing */
    CHECK(cpupolicy_topology_apply(mod, p, NULL) == CPUPOLICY_OK);
    cpupolicy_cpuid_leaf leaf;
    CHECK(cpupolicy_policy_cpuid(p, 0x1f, 0, &leaf) == CPUPOLICY_OK && leaf.b != 0);
    cpupolicy_policy *fresh = small_policy(0);
    CHECK(cpupolicy_topology_apply(t, fresh, "4.20") == CPUPOLICY_OK);
    CHECK(cpupolicy_policy_cpuid(fresh, 0xb, 1, &leaf) == CPUPOLICY_OK && leaf.b == 6);
    cpupolicy_policy_free(fresh);
    cpupolicy_policy_free(before);
    cpupolicy_policy_free(p);
    cpupolicy_topology_free(mod);
    cpupolicy_topology_free(t);
}

static void xen(void)
{
    cpupolicy_xen *x = (cpupolicy_xen *)0x1;
    CHECK(cpupolicy_xen_open(NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_xen_host(NULL, NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_xen_domain_policy(NULL, 0, NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_xen_free(NULL) == CPUPOLICY_OK);
    cpupolicy_policy *p = small_policy(0);
    CHECK(cpupolicy_xen_set_domain_policy((const cpupolicy_xen *)p, 1, p, NULL) == CPUPOLICY_WRONG_HANDLE);
    CHECK(strstr(last_error(), "expected a xen handle") != NULL);
    cpupolicy_featureset *fs = NULL;
    CHECK(cpupolicy_xen_featureset((const cpupolicy_xen *)p, CPUPOLICY_SYSTEM_HOST, &fs) == CPUPOLICY_WRONG_HANDLE);
    cpupolicy_status status = cpupolicy_xen_open(&x);
    if (status == CPUPOLICY_OK) {
        /* In dom0: the argument checks still come first. */
        CHECK(cpupolicy_xen_featureset(x, 6, &fs) == CPUPOLICY_INVALID_ARGUMENT);
        CHECK(cpupolicy_xen_host(x, NULL) == CPUPOLICY_INVALID_ARGUMENT);
        cpupolicy_xen_free(x);
    } else {
        CHECK(status == CPUPOLICY_NO_PRIVCMD || status == CPUPOLICY_PERMISSION_DENIED);
        CHECK(strstr(last_error(), "privcmd") != NULL);
        CHECK(x == (cpupolicy_xen *)0x1);
    }
    cpupolicy_policy_free(p);
}

/* Reading files: NULL, a missing file, a file that is not a document, one of the other kind; a
 * file written with a policy's JSON reads back equal. Messages start with the path. */
static void files(void)
{
    cpupolicy_policy *p = (cpupolicy_policy *)0x1, *back = NULL;
    cpupolicy_host *h = (cpupolicy_host *)0x1;
    CHECK(cpupolicy_policy_read(NULL, &p) == CPUPOLICY_INVALID_ARGUMENT && strstr(last_error(), "path") != NULL);
    CHECK(cpupolicy_host_read("/nonexistent/host.json", NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_host_read("/nonexistent/host.json", &h) == CPUPOLICY_IO_ERROR);
    CHECK(strncmp(last_error(), "/nonexistent/host.json: ", 24) == 0);
    CHECK(h == (cpupolicy_host *)0x1 && p == (cpupolicy_policy *)0x1);

    char path[] = "/tmp/cpupolicy-policy_errors-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("{\"format\": \"cpupolicy-policy\", \"version\": 1, \"cpuid\": [[\"0x1\"", f);
    fclose(f);
    CHECK(cpupolicy_policy_read(path, &p) == CPUPOLICY_PARSE_ERROR);
    CHECK(strncmp(last_error(), path, strlen(path)) == 0);
    CHECK(p == (cpupolicy_policy *)0x1);

    cpupolicy_policy *small = small_policy(0);
    char *json;
#define SMALL_JSON(b, c, n) cpupolicy_policy_to_json(small, b, c, n)
    TEXT_OF(json, SMALL_JSON);
    CHECK(json != NULL);
    if (json && (f = fopen(path, "w"))) {
        fputs(json, f);
        fclose(f);
        bool equal = false;
        CHECK(cpupolicy_policy_read(path, &back) == CPUPOLICY_OK);
        CHECK(back && cpupolicy_policy_equal(small, back, &equal) == CPUPOLICY_OK && equal);
        /* One policy is not a host. */
        CHECK(cpupolicy_host_read(path, &h) == CPUPOLICY_WRONG_DOCUMENT);
        CHECK(strncmp(last_error(), path, strlen(path)) == 0 && strstr(last_error(), "cpupolicy_policy_parse"));
    }
    free(json);
    cpupolicy_policy_free(back);
    cpupolicy_policy_free(small);
    remove(path);
}

int main(void)
{
    files();
    policies();
    topologies();
    xen();
    CHECK(strcmp(cpupolicy_strerror(CPUPOLICY_NO_PRIVCMD), cpupolicy_strerror(CPUPOLICY_XEN_ERROR)) != 0);
    CHECK(strlen(cpupolicy_strerror(CPUPOLICY_UNSUPPORTED_CPU)) > 0);
    /* Any int is safe to pass; a number that is no status is named as such. */
    CHECK(strcmp(cpupolicy_strerror(12345), "unknown status") == 0);
    CHECK(strcmp(cpupolicy_strerror(-1), "unknown status") == 0);
    CHECK(strcmp(cpupolicy_strerror(CPUPOLICY_IO_ERROR), "unknown status") != 0);
    if (failures) {
        printf("policy_errors: %d checks failed\n", failures);
        return 1;
    }
    printf("policy_errors: all checks passed\n");
    return 0;
}
