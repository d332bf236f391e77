/* cpupolicy_policy_serialise on real policies: usage `policy_serialise FILE...`, each FILE a policy
 * (a libvirt CPU dump, …) or a host's policies (`xen-cpuid -p` output: each system policy it holds).
 * For every policy, in every layout of Xen's format, the entries written into caller buffers must be
 * those cpupolicy_policy_to_xen_leaves and _msrs give; a buffer one entry short gets
 * CPUPOLICY_BUFFER_TOO_SMALL with both counts set to the needs and neither buffer written (canaries);
 * size queries count each array. Then the argument errors, each leaving the counts untouched.
 * Prints each policy's counts in the newest layout (`FILE: N leaves, M MSRs`, or
 * `FILE: Raw policy: N leaves, M MSRs` as xen-cpuid prints a host's), then
 * "policy_serialise: all checks passed" and exits 0, or names the failed checks and exits 1. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cpupolicy.h>

static int failures;

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: %s: check failed: %s (last error: %s)\n", __FILE__, __LINE__, \
                    context, #cond, last_error());                                               \
            failures++;                                                                          \
        }                                                                                        \
    } while (0)

/* What is being checked, for the failure messages. */
static char context[1024] = "setup";

static const char *last_error(void)
{
    static char buf[2048];
    if (cpupolicy_last_error(buf, sizeof(buf), NULL) != CPUPOLICY_OK)
        return "<last error too long>";
    return buf;
}

/* The layouts of Xen's format: the newest (NULL), 4.14.0's single MSR, 4.16.0's leaf 7 limit, 4.20. */
static const char *const versions[] = { NULL, "4.14.0", "4.16.0", "4.20.3" };

/* xen-cpuid's names of the system policies, in CPUPOLICY_SYSTEM_* order. */
static const char *const system_names[] = { "Raw", "Host", "PV Max", "HVM Max", "PV Default", "HVM Default" };

#define CANARY 0xa5

static bool all_canary(const void *buffer, size_t bytes)
{
    const unsigned char *b = buffer;
    for (size_t i = 0; i < bytes; i++)
        if (b[i] != CANARY)
            return false;
    return true;
}

/* Everything about serialising `p` as Xen `version` (NULL: the newest) lays it out. Sets the counts. */
static void check_layout(const cpupolicy_policy *p, const char *version, size_t *out_leaves, size_t *out_msrs)
{
    /* What the array functions write: the expected entries. */
    size_t nr_leaves = 0, nr_msrs = 0;
    CHECK(cpupolicy_policy_to_xen_leaves(p, version, NULL, 0, &nr_leaves) == CPUPOLICY_OK);
    CHECK(cpupolicy_policy_to_xen_msrs(p, version, NULL, 0, &nr_msrs) == CPUPOLICY_OK);
    CHECK(nr_leaves >= 3 && nr_msrs >= 1); /* leaf 0 and the two hypervisor leaves; MSR 0xce */
    if (nr_leaves < 3 || nr_msrs < 1)
        return;
    size_t leaf_bytes = nr_leaves * sizeof(cpupolicy_cpuid_leaf), msr_bytes = nr_msrs * sizeof(cpupolicy_msr_entry);
    cpupolicy_cpuid_leaf *want_leaves = malloc(leaf_bytes);
    cpupolicy_msr_entry *want_msrs = malloc(msr_bytes);
    /* One entry more than needed, all canaries: what the calls write is seen, and what they must not. */
    cpupolicy_cpuid_leaf *leaves = malloc(leaf_bytes + sizeof(cpupolicy_cpuid_leaf));
    cpupolicy_msr_entry *msrs = malloc(msr_bytes + sizeof(cpupolicy_msr_entry));
    if (!want_leaves || !want_msrs || !leaves || !msrs) {
        fprintf(stderr, "policy_serialise: out of memory\n");
        exit(1);
    }
    CHECK(cpupolicy_policy_to_xen_leaves(p, version, want_leaves, nr_leaves, NULL) == CPUPOLICY_OK);
    CHECK(cpupolicy_policy_to_xen_msrs(p, version, want_msrs, nr_msrs, NULL) == CPUPOLICY_OK);

    /* Size query of both. */
    size_t nl = 0, nm = 0;
    CHECK(cpupolicy_policy_serialise(p, version, NULL, &nl, NULL, &nm) == CPUPOLICY_OK);
    CHECK(nl == nr_leaves && nm == nr_msrs);

    /* Exact capacities, into uninitialised memory (valgrind would see a read of it): the same
     * entries as the array functions, nothing past them. */
    cpupolicy_cpuid_leaf *exact_leaves = malloc(leaf_bytes);
    cpupolicy_msr_entry *exact_msrs = malloc(msr_bytes);
    if (!exact_leaves || !exact_msrs) {
        fprintf(stderr, "policy_serialise: out of memory\n");
        exit(1);
    }
    nl = nr_leaves;
    nm = nr_msrs;
    CHECK(cpupolicy_policy_serialise(p, version, exact_leaves, &nl, exact_msrs, &nm) == CPUPOLICY_OK);
    CHECK(nl == nr_leaves && nm == nr_msrs);
    CHECK(memcmp(exact_leaves, want_leaves, leaf_bytes) == 0);
    CHECK(memcmp(exact_msrs, want_msrs, msr_bytes) == 0);
    free(exact_leaves);
    free(exact_msrs);

    /* A larger buffer: the entries, then the canary untouched. */
    memset(leaves, CANARY, leaf_bytes + sizeof(*leaves));
    memset(msrs, CANARY, msr_bytes + sizeof(*msrs));
    nl = nr_leaves + 1;
    nm = nr_msrs + 1;
    CHECK(cpupolicy_policy_serialise(p, version, leaves, &nl, msrs, &nm) == CPUPOLICY_OK);
    CHECK(nl == nr_leaves && nm == nr_msrs);
    CHECK(memcmp(leaves, want_leaves, leaf_bytes) == 0 && all_canary(&leaves[nr_leaves], sizeof(*leaves)));
    CHECK(memcmp(msrs, want_msrs, msr_bytes) == 0 && all_canary(&msrs[nr_msrs], sizeof(*msrs)));

    /* One leaf short: neither buffer written, both counts the needs. */
    memset(leaves, CANARY, leaf_bytes + sizeof(*leaves));
    memset(msrs, CANARY, msr_bytes + sizeof(*msrs));
    nl = nr_leaves - 1;
    nm = nr_msrs;
    CHECK(cpupolicy_policy_serialise(p, version, leaves, &nl, msrs, &nm) == CPUPOLICY_BUFFER_TOO_SMALL);
    CHECK(nl == nr_leaves && nm == nr_msrs);
    CHECK(strncmp(last_error(), "leaves: buffer of ", 18) == 0);
    CHECK(all_canary(leaves, leaf_bytes + sizeof(*leaves)) && all_canary(msrs, msr_bytes + sizeof(*msrs)));

    /* One MSR short: the same. */
    nl = nr_leaves;
    nm = nr_msrs - 1;
    CHECK(cpupolicy_policy_serialise(p, version, leaves, &nl, msrs, &nm) == CPUPOLICY_BUFFER_TOO_SMALL);
    CHECK(nl == nr_leaves && nm == nr_msrs);
    CHECK(strncmp(last_error(), "msrs: buffer of ", 16) == 0);
    CHECK(all_canary(leaves, leaf_bytes + sizeof(*leaves)) && all_canary(msrs, msr_bytes + sizeof(*msrs)));

    /* A size query of one array beside a short other: still too small, nothing written. */
    nl = 0;
    nm = nr_msrs - 1;
    CHECK(cpupolicy_policy_serialise(p, version, NULL, &nl, msrs, &nm) == CPUPOLICY_BUFFER_TOO_SMALL);
    CHECK(nl == nr_leaves && nm == nr_msrs && all_canary(msrs, msr_bytes + sizeof(*msrs)));

    /* A size query of one array beside a buffer for the other: that one written, this one counted. */
    nl = 0;
    nm = nr_msrs;
    CHECK(cpupolicy_policy_serialise(p, version, NULL, &nl, msrs, &nm) == CPUPOLICY_OK);
    CHECK(nl == nr_leaves && nm == nr_msrs && memcmp(msrs, want_msrs, msr_bytes) == 0);
    nl = nr_leaves;
    nm = 0;
    CHECK(cpupolicy_policy_serialise(p, version, leaves, &nl, NULL, &nm) == CPUPOLICY_OK);
    CHECK(nl == nr_leaves && nm == nr_msrs && memcmp(leaves, want_leaves, leaf_bytes) == 0);
    CHECK(all_canary(&leaves[nr_leaves], sizeof(*leaves)) && all_canary(&msrs[nr_msrs], sizeof(*msrs)));

    free(want_leaves);
    free(want_msrs);
    free(leaves);
    free(msrs);
    *out_leaves = nr_leaves;
    *out_msrs = nr_msrs;
}

/* Every layout of one policy; prints its counts in the newest. */
static void check_policy(const char *name, const cpupolicy_policy *p)
{
    size_t newest_leaves = 0, newest_msrs = 0;
    for (size_t v = 0; v < sizeof(versions) / sizeof(versions[0]); v++) {
        size_t nl = 0, nm = 0;
        snprintf(context, sizeof(context), "%s, Xen %s", name, versions[v] ? versions[v] : "(newest)");
        check_layout(p, versions[v], &nl, &nm);
        if (v == 0) {
            newest_leaves = nl;
            newest_msrs = nm;
        }
    }
    printf("%s: %zu leaves, %zu MSRs\n", name, newest_leaves, newest_msrs);
}

/* The argument errors, each refused with the counts and the buffers untouched. */
static void check_errors(const cpupolicy_policy *p)
{
    snprintf(context, sizeof(context), "argument errors");
    cpupolicy_cpuid_leaf leaves[130];
    cpupolicy_msr_entry msrs[3];
    memset(leaves, CANARY, sizeof(leaves));
    memset(msrs, CANARY, sizeof(msrs));
    size_t nl = 130, nm = 3;
    CHECK(cpupolicy_policy_serialise(NULL, NULL, leaves, &nl, msrs, &nm) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "policy is NULL") == 0);
    CHECK(cpupolicy_policy_serialise(p, NULL, leaves, NULL, msrs, &nm) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "nr_leaves is NULL") == 0);
    CHECK(cpupolicy_policy_serialise(p, NULL, leaves, &nl, msrs, NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "nr_msrs is NULL") == 0);
    CHECK(cpupolicy_policy_serialise(p, NULL, NULL, &nl, msrs, &nm) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "leaves is NULL but *nr_leaves is 130") == 0);
    CHECK(cpupolicy_policy_serialise(p, NULL, leaves, &nl, NULL, &nm) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strcmp(last_error(), "msrs is NULL but *nr_msrs is 3") == 0);
    CHECK(cpupolicy_policy_serialise(p, "four", leaves, &nl, msrs, &nm) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "'four'") != NULL);
    CHECK(cpupolicy_policy_serialise(p, "4.13", leaves, &nl, msrs, &nm) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "predates 4.14") != NULL);
    cpupolicy_featureset *fs = NULL;
    CHECK(cpupolicy_featureset_new(&fs) == CPUPOLICY_OK);
    CHECK(cpupolicy_policy_serialise((const cpupolicy_policy *)fs, NULL, leaves, &nl, msrs, &nm)
          == CPUPOLICY_WRONG_HANDLE);
    CHECK(strstr(last_error(), "expected a policy, got a handle of another type") != NULL);
    cpupolicy_featureset_free(fs);
    /* A freed handle, passed right after its free (nothing allocated between): never read. */
    cpupolicy_policy *freed = NULL;
    CHECK(cpupolicy_policy_clone(p, &freed) == CPUPOLICY_OK);
    CHECK(cpupolicy_policy_free(freed) == CPUPOLICY_OK);
    CHECK(cpupolicy_policy_serialise(freed, NULL, leaves, &nl, msrs, &nm) == CPUPOLICY_WRONG_HANDLE);
    CHECK(strstr(last_error(), "not a live handle") != NULL);
    CHECK(nl == 130 && nm == 3);
    CHECK(all_canary(leaves, sizeof(leaves)) && all_canary(msrs, sizeof(msrs)));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: policy_serialise FILE...\n");
        return 2;
    }
    bool errors_checked = false;
    for (int i = 1; i < argc; i++) {
        snprintf(context, sizeof(context), "%s", argv[i]);
        cpupolicy_policy *p = NULL;
        cpupolicy_status status = cpupolicy_policy_read(argv[i], &p);
        if (status == CPUPOLICY_OK) {
            check_policy(argv[i], p);
            if (!errors_checked) {
                check_errors(p);
                errors_checked = true;
            }
            cpupolicy_policy_free(p);
            continue;
        }
        /* A host's policies: each system policy it holds. */
        CHECK(status == CPUPOLICY_WRONG_DOCUMENT);
        cpupolicy_host *h = NULL;
        CHECK(cpupolicy_host_read(argv[i], &h) == CPUPOLICY_OK);
        for (cpupolicy_system_policy which = CPUPOLICY_SYSTEM_RAW; h && which <= CPUPOLICY_SYSTEM_HVM_DEFAULT; which++) {
            if (cpupolicy_host_policy(h, which, &p) != CPUPOLICY_OK)
                continue;
            char name[1024];
            snprintf(name, sizeof(name), "%s: %s policy", argv[i], system_names[which]);
            check_policy(name, p);
            if (!errors_checked) {
                check_errors(p);
                errors_checked = true;
            }
            cpupolicy_policy_free(p);
        }
        cpupolicy_host_free(h);
    }
    CHECK(errors_checked); /* there was a policy to check them with */
    if (failures) {
        printf("policy_serialise: %d checks failed\n", failures);
        return 1;
    }
    printf("policy_serialise: all checks passed\n");
    return 0;
}
