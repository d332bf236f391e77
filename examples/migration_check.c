/* May this VM migrate to that host? Every reason it may not, by name, as a toolstack would
 * report it before starting a migration.
 *
 *   cc migration_check.c $(pkg-config --cflags --libs cpupolicy) -o migration_check
 *   ./migration_check --kind hvm vm-policy.json destination-host.json
 *
 * The VM file is one policy (a JSON policy, `xen-cpuid -p DOMID` output) or a host's policies
 * (JSON host bundle, `xen-cpuid -p`), standing for a VM booted there with its default policy.
 * The destination is a host (JSON host bundle or `xen-cpuid -p`). Exit status 0 when the VM may
 * migrate, 1 when it may not, 2 on error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cpupolicy.h>

static void fail(const char *what, cpupolicy_status status)
{
    char message[1024];
    if (cpupolicy_last_error(message, sizeof(message), NULL) != CPUPOLICY_OK)
        message[0] = '\0';
    fprintf(stderr, "migration_check: %s: %s: %s\n", what, cpupolicy_strerror(status), message);
    exit(2);
}

/* One text of a check item, with the size-query convention (caller frees). */
static char *item(const cpupolicy_check *check, cpupolicy_check_list list, size_t i, cpupolicy_check_part part)
{
    size_t needed;
    cpupolicy_status status = cpupolicy_check_item(check, list, i, part, NULL, 0, &needed);
    if (status != CPUPOLICY_OK)
        fail("check item", status);
    char *text = malloc(needed);
    if (!text || (status = cpupolicy_check_item(check, list, i, part, text, needed, NULL)) != CPUPOLICY_OK)
        fail("check item", status);
    return text;
}

int main(int argc, char **argv)
{
    cpupolicy_guest_kind kind = CPUPOLICY_GUEST_HVM;
    cpupolicy_system_policy vm_default = CPUPOLICY_SYSTEM_HVM_DEFAULT;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "--kind") == 0) {
        if (strcmp(argv[2], "pv") == 0) {
            kind = CPUPOLICY_GUEST_PV;
            vm_default = CPUPOLICY_SYSTEM_PV_DEFAULT;
        } else if (strcmp(argv[2], "hvm-shadow") == 0) {
            kind = CPUPOLICY_GUEST_HVM_SHADOW;
        } else if (strcmp(argv[2], "hvm") != 0) {
            fprintf(stderr, "migration_check: unknown kind '%s' (pv, hvm, hvm-shadow)\n", argv[2]);
            return 2;
        }
        first = 3;
    }
    if (argc - first != 2) {
        fprintf(stderr, "usage: %s [--kind pv|hvm|hvm-shadow] VM_FILE HOST_FILE\n", argv[0]);
        return 2;
    }
    const char *vm_path = argv[first], *host_path = argv[first + 1];

    /* The VM: one policy, or a host's default policy for the kind. */
    cpupolicy_policy *vm;
    cpupolicy_status status = cpupolicy_policy_read(vm_path, &vm);
    if (status == CPUPOLICY_WRONG_DOCUMENT) {
        cpupolicy_host *booted_on;
        if ((status = cpupolicy_host_read(vm_path, &booted_on)) != CPUPOLICY_OK)
            fail("the VM's policy", status);
        if ((status = cpupolicy_host_policy(booted_on, vm_default, &vm)) != CPUPOLICY_OK)
            fail(vm_path, status);
        cpupolicy_host_free(booted_on);
        fprintf(stderr, "migration_check: note: %s holds a host's policies; checking a VM booted there with its "
                        "default policy\n", vm_path);
    } else if (status != CPUPOLICY_OK) {
        fail("the VM's policy", status);
    }

    cpupolicy_host *host;
    if ((status = cpupolicy_host_read(host_path, &host)) != CPUPOLICY_OK)
        fail("the destination", status);

    cpupolicy_check *check;
    if ((status = cpupolicy_check_migration(vm, host, kind, &check)) != CPUPOLICY_OK)
        fail("check", status);
    bool compatible;
    if ((status = cpupolicy_check_compatible(check, &compatible)) != CPUPOLICY_OK)
        fail("check", status);

    /* The destination named as the command line names hosts: the file name, less its extension. */
    const char *base = strrchr(host_path, '/');
    base = base ? base + 1 : host_path;
    const char *dot = strrchr(base, '.');
    int name_length = (int)(dot && dot != base ? (size_t)(dot - base) : strlen(base));
    printf("%.*s: %s\n", name_length, base, compatible ? "compatible" : "incompatible");

    const struct { cpupolicy_check_list list; const char *label; } lists[] = {
        { CPUPOLICY_CHECK_MISMATCHES, "mismatch" },
        { CPUPOLICY_CHECK_WARNINGS, "warning" },
    };
    for (size_t l = 0; l < 2; l++) {
        size_t count;
        if ((status = cpupolicy_check_count(check, lists[l].list, &count)) != CPUPOLICY_OK)
            fail("check count", status);
        for (size_t i = 0; i < count; i++) {
            char *message = item(check, lists[l].list, i, CPUPOLICY_ITEM_MESSAGE);
            printf("  %s: %s\n", lists[l].label, message);
            free(message);
        }
    }

    /* The features by name alone, for a toolstack that offers to drop them from the VM. */
    size_t count;
    if ((status = cpupolicy_check_count(check, CPUPOLICY_CHECK_MISMATCHES, &count)) != CPUPOLICY_OK)
        fail("check count", status);
    int missing = 0;
    for (size_t i = 0; i < count; i++) {
        char *feature = item(check, CPUPOLICY_CHECK_MISMATCHES, i, CPUPOLICY_ITEM_FEATURE);
        if (feature[0] != '\0')
            printf("%s%s", missing++ ? " " : "missing features: ", feature);
        free(feature);
    }
    if (missing)
        printf("\n");

    cpupolicy_check_free(check);
    cpupolicy_host_free(host);
    cpupolicy_policy_free(vm);
    return compatible ? 0 : 1;
}
