/* Level a pool of Xen hosts, as a toolstack does when a host joins: what new VMs get, what every
 * host accepts from a migration, and what the pool lost, and because of which host.
 *
 *   cc pool_level.c $(pkg-config --cflags --libs cpupolicy) -o pool_level
 *   ./pool_level --kind hvm host1.json host2.json xen-cpuid-p-of-host3.txt
 *
 * Each file is a JSON host bundle or `xen-cpuid -p` output; a host is named after its file (the
 * name without directories and last extension). Exit status 0, or 2 with a message on error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cpupolicy.h>

static void fail(const char *what, cpupolicy_status status)
{
    /* The detailed message can be long (it names every host of a mixed-vendor pool). */
    size_t needed = 0;
    char *message = NULL;
    if (cpupolicy_last_error(NULL, 0, &needed) == CPUPOLICY_OK && (message = malloc(needed)))
        cpupolicy_last_error(message, needed, NULL);
    fprintf(stderr, "pool_level: %s: %s: %s\n", what, cpupolicy_strerror(status), message ? message : "");
    free(message);
    exit(2);
}

/* "dir/xen-4.20-qemu64.policy.txt" -> "xen-4.20-qemu64.policy" (caller frees). */
static char *host_name(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char *name = malloc(strlen(base) + 1);
    if (!name)
        return NULL;
    strcpy(name, base);
    char *dot = strrchr(name, '.');
    if (dot && dot != name)
        *dot = '\0';
    return name;
}

/* A policy's featureset as xen-cpuid prints it (caller frees). */
static char *featureset_text(const cpupolicy_policy *policy)
{
    cpupolicy_featureset *fs;
    cpupolicy_status status = cpupolicy_policy_featureset(policy, &fs);
    if (status != CPUPOLICY_OK)
        fail("featureset", status);
    size_t needed;
    if ((status = cpupolicy_featureset_format(fs, ':', NULL, 0, &needed)) != CPUPOLICY_OK)
        fail("format", status);
    char *text = malloc(needed);
    if (!text || (status = cpupolicy_featureset_format(fs, ':', text, needed, NULL)) != CPUPOLICY_OK)
        fail("format", status);
    cpupolicy_featureset_free(fs);
    return text;
}

int main(int argc, char **argv)
{
    cpupolicy_guest_kind kind = CPUPOLICY_GUEST_HVM;
    const char *kind_name = "hvm";
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "--kind") == 0) {
        kind_name = argv[2];
        if (strcmp(kind_name, "pv") == 0)
            kind = CPUPOLICY_GUEST_PV;
        else if (strcmp(kind_name, "hvm") == 0)
            kind = CPUPOLICY_GUEST_HVM;
        else if (strcmp(kind_name, "hvm-shadow") == 0)
            kind = CPUPOLICY_GUEST_HVM_SHADOW;
        else {
            fprintf(stderr, "pool_level: unknown kind '%s' (pv, hvm, hvm-shadow)\n", kind_name);
            return 2;
        }
        first = 3;
    }
    size_t nr_hosts = (size_t)(argc - first);
    if (nr_hosts == 0) {
        fprintf(stderr, "usage: %s [--kind pv|hvm|hvm-shadow] HOST_FILE...\n", argv[0]);
        return 2;
    }

    cpupolicy_host **hosts = calloc(nr_hosts, sizeof(*hosts));
    char **names = calloc(nr_hosts, sizeof(*names));
    if (!hosts || !names)
        return 2;
    for (size_t i = 0; i < nr_hosts; i++) {
        const char *path = argv[first + i];
        cpupolicy_status status = cpupolicy_host_read(path, &hosts[i]);
        if (status != CPUPOLICY_OK)
            fail("host", status);
        names[i] = host_name(path);
    }

    cpupolicy_pool *pool;
    cpupolicy_status status = cpupolicy_level((const cpupolicy_host *const *)hosts, (const char *const *)names,
                                              nr_hosts, kind, CPUPOLICY_LEVEL_EXPLAIN, &pool);
    if (status != CPUPOLICY_OK)
        fail("level", status);

    printf("pool of %zu hosts, %s guests\n", nr_hosts, kind_name);
    const struct { cpupolicy_pool_role role; const char *label; } roles[] = {
        { CPUPOLICY_POOL_DEFAULT, "default" },
        { CPUPOLICY_POOL_ACCEPTANCE, "acceptance" },
    };
    for (size_t r = 0; r < 2; r++) {
        cpupolicy_policy *policy;
        if ((status = cpupolicy_pool_policy(pool, roles[r].role, &policy)) != CPUPOLICY_OK)
            fail("pool policy", status);
        char *fs = featureset_text(policy);
        printf("%s featureset: %s\n", roles[r].label, fs);
        free(fs);
        cpupolicy_policy_free(policy);
    }

    /* Size query, then the explanation itself. */
    size_t needed;
    if ((status = cpupolicy_pool_explain(pool, NULL, 0, &needed)) != CPUPOLICY_OK)
        fail("explain", status);
    char *explanation = malloc(needed);
    if (!explanation || (status = cpupolicy_pool_explain(pool, explanation, needed, NULL)) != CPUPOLICY_OK)
        fail("explain", status);
    fputs(explanation, stdout);
    free(explanation);

    cpupolicy_pool_free(pool);
    for (size_t i = 0; i < nr_hosts; i++) {
        cpupolicy_host_free(hosts[i]);
        free(names[i]);
    }
    free(hosts);
    free(names);
    return 0;
}
