/* Fetch CPU policies from the running Xen, as a toolstack in dom0 does (run as root).
 *
 *   cc xen_fetch.c $(pkg-config --cflags --libs cpupolicy) -o xen_fetch
 *   ./xen_fetch                    the six system policies, exactly as `xen-cpuid -p` prints them
 *   ./xen_fetch featuresets        the six system featuresets, as `xen-cpuid` prints "Dynamic sets"
 *   ./xen_fetch domain DOMID       a domain's policy, as `xen-cpuid -p DOMID` prints it
 *   ./xen_fetch set DOMID FILE     set a new (not yet run) domain's policy from a policy file
 *
 * Exit status 0, or 2 with the status and message on error: outside Xen, the "no privcmd" status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cpupolicy.h>

static void fail(const char *what, cpupolicy_status status)
{
    size_t needed = 0;
    char *message = NULL;
    if (cpupolicy_last_error(NULL, 0, &needed) == CPUPOLICY_OK && (message = malloc(needed)))
        cpupolicy_last_error(message, needed, NULL);
    fprintf(stderr, "xen_fetch: %s: status %d (%s): %s\n", what, (int)status, cpupolicy_strerror(status),
            message ? message : "");
    free(message);
    exit(2);
}

static uint16_t parse_domid(const char *text)
{
    char *end;
    unsigned long domid = strtoul(text, &end, 0);
    if (*text == '\0' || *end != '\0' || domid > 0x7fef) {
        fprintf(stderr, "xen_fetch: '%s' is not a domain id\n", text);
        exit(2);
    }
    return (uint16_t)domid;
}

/* Prints the text a size-query function produces. */
#define PRINT_TEXT(what, call_with)                                              \
    do {                                                                         \
        size_t needed_;                                                          \
        cpupolicy_status status_;                                                \
        char *buffer_ = NULL;                                                    \
        size_t capacity_ = 0;                                                    \
        if ((status_ = call_with(buffer_, capacity_, &needed_)) != CPUPOLICY_OK) \
            fail(what, status_);                                                 \
        buffer_ = malloc(capacity_ = needed_);                                   \
        if (!buffer_)                                                            \
            exit(2);                                                             \
        if ((status_ = call_with(buffer_, capacity_, NULL)) != CPUPOLICY_OK)     \
            fail(what, status_);                                                 \
        fputs(buffer_, stdout);                                                  \
        free(buffer_);                                                           \
    } while (0)

int main(int argc, char **argv)
{
    const char *command = argc > 1 ? argv[1] : "policies";
    cpupolicy_xen *xen;
    cpupolicy_status status = cpupolicy_xen_open(&xen);
    if (status != CPUPOLICY_OK)
        fail("cpupolicy_xen_open", status);

    if (strcmp(command, "policies") == 0 && argc <= 2) {
        cpupolicy_host *host;
        if ((status = cpupolicy_xen_host(xen, &host)) != CPUPOLICY_OK)
            fail("cpupolicy_xen_host", status);
#define HOST_TEXT(b, c, n) cpupolicy_host_to_xen_cpuid(host, b, c, n)
        PRINT_TEXT("host policies", HOST_TEXT);
        cpupolicy_host_free(host);
    } else if (strcmp(command, "featuresets") == 0 && argc == 2) {
        /* xen-cpuid's order and labels; the sysctl numbers them differently from the policies. */
        const struct { cpupolicy_system_policy which; const char *label; } sets[] = {
            { CPUPOLICY_SYSTEM_RAW, "Raw" },
            { CPUPOLICY_SYSTEM_HOST, "Host" },
            { CPUPOLICY_SYSTEM_PV_DEFAULT, "PV Default" },
            { CPUPOLICY_SYSTEM_HVM_DEFAULT, "HVM Default" },
            { CPUPOLICY_SYSTEM_PV_MAX, "PV Max" },
            { CPUPOLICY_SYSTEM_HVM_MAX, "HVM Max" },
        };
        for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
            cpupolicy_featureset *fs;
            status = cpupolicy_xen_featureset(xen, sets[i].which, &fs);
            if (status == CPUPOLICY_NOT_AVAILABLE) {
                printf("%s featureset not supported by Xen\n", sets[i].label);
                continue;
            }
            if (status != CPUPOLICY_OK)
                fail(sets[i].label, status);
            printf("%-24s        ", sets[i].label);
#define FS_TEXT(b, c, n) cpupolicy_featureset_format(fs, ':', b, c, n)
            PRINT_TEXT("featureset", FS_TEXT);
            printf("\n");
            cpupolicy_featureset_free(fs);
        }
    } else if (strcmp(command, "domain") == 0 && argc == 3) {
        uint16_t domid = parse_domid(argv[2]);
        cpupolicy_policy *policy;
        if ((status = cpupolicy_xen_domain_policy(xen, domid, &policy)) != CPUPOLICY_OK)
            fail("cpupolicy_xen_domain_policy", status);
        /* In the running Xen's format, as xen-cpuid prints it. */
        size_t needed;
        if ((status = cpupolicy_xen_version(xen, NULL, 0, &needed)) != CPUPOLICY_OK)
            fail("cpupolicy_xen_version", status);
        char *version = malloc(needed);
        if (!version || (status = cpupolicy_xen_version(xen, version, needed, NULL)) != CPUPOLICY_OK)
            fail("cpupolicy_xen_version", status);
#define DOMAIN_TEXT(b, c, n) cpupolicy_policy_to_xen_cpuid(policy, domid, version, b, c, n)
        PRINT_TEXT("domain policy", DOMAIN_TEXT);
        free(version);
        cpupolicy_policy_free(policy);
    } else if (strcmp(command, "set") == 0 && argc == 4) {
        uint16_t domid = parse_domid(argv[2]);
        cpupolicy_policy *policy;
        if ((status = cpupolicy_policy_read(argv[3], &policy)) != CPUPOLICY_OK)
            fail("policy file", status);
        size_t dropped;
        /* A refusal names the leaf, sub-leaf or MSR Xen objected to. */
        if ((status = cpupolicy_xen_set_domain_policy(xen, domid, policy, &dropped)) != CPUPOLICY_OK)
            fail("cpupolicy_xen_set_domain_policy", status);
        printf("domain %u: policy set (%zu entries Xen's format cannot carry were left out)\n", domid, dropped);
        cpupolicy_policy_free(policy);
    } else {
        fprintf(stderr, "usage: %s [featuresets | domain DOMID | set DOMID POLICY_FILE]\n", argv[0]);
        cpupolicy_xen_free(xen);
        return 2;
    }

    cpupolicy_xen_free(xen);
    return 0;
}
