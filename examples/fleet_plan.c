/* Before a host joins a pool: which VM may run where now, and which VMs the join would strand.
 *
 *   cc fleet_plan.c $(pkg-config --cflags --libs cpupolicy) -o fleet_plan
 *   ./fleet_plan new-host.json host1.json host2.json ...
 *
 * Each file is a JSON host bundle or `xen-cpuid -p` output; a host is named after its file (the
 * name without directories and last extension). On each host runs one HVM VM, `vmN`, booted
 * there with the host's default policy. Prints the placement of those VMs (as `cpupolicy
 * placement` prints it), then the plan of adding the new host (as `cpupolicy plan --add`).
 * Exit status 0, 1 when the join would strand a VM, 2 with a message on error.
 */
#include <stdbool.h>
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
    fprintf(stderr, "fleet_plan: %s: %s: %s\n", what, cpupolicy_strerror(status), message ? message : "");
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

static cpupolicy_host *read_host(const char *path)
{
    cpupolicy_host *host;
    cpupolicy_status status = cpupolicy_host_read(path, &host);
    if (status != CPUPOLICY_OK)
        fail(path, status);
    return host;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: fleet_plan NEW-HOST HOST...\n");
        return 2;
    }
    size_t nr = (size_t)(argc - 2);
    const cpupolicy_host **hosts = calloc(nr, sizeof(*hosts));
    const cpupolicy_policy **vms = calloc(nr, sizeof(*vms));
    char **names = calloc(nr, sizeof(*names));
    char **vm_names = calloc(nr, sizeof(*vm_names));
    if (!hosts || !vms || !names || !vm_names)
        return 2;
    for (size_t i = 0; i < nr; i++) {
        hosts[i] = read_host(argv[i + 2]);
        names[i] = host_name(argv[i + 2]);
        vm_names[i] = malloc(32);
        if (!names[i] || !vm_names[i])
            return 2;
        snprintf(vm_names[i], 32, "vm%zu", i + 1);
        cpupolicy_policy *policy;
        cpupolicy_status status = cpupolicy_host_policy(hosts[i], CPUPOLICY_SYSTEM_HVM_DEFAULT, &policy);
        if (status != CPUPOLICY_OK)
            fail("HVM default policy", status);
        vms[i] = policy;
    }

    /* Size query, then the text. */
    size_t needed = 0;
    cpupolicy_status status =
        cpupolicy_placement(hosts, (const char *const *)names, nr, vms, (const char *const *)vm_names,
                            (const char *const *)names, nr, CPUPOLICY_GUEST_HVM, 0, CPUPOLICY_REPORT_TEXT, NULL, 0,
                            &needed);
    if (status != CPUPOLICY_OK)
        fail("placement", status);
    char *text = malloc(needed);
    if (!text)
        return 2;
    status = cpupolicy_placement(hosts, (const char *const *)names, nr, vms, (const char *const *)vm_names,
                                 (const char *const *)names, nr, CPUPOLICY_GUEST_HVM, 0, CPUPOLICY_REPORT_TEXT, text,
                                 needed, NULL);
    if (status != CPUPOLICY_OK)
        fail("placement", status);
    fputs(text, stdout);
    free(text);

    cpupolicy_host *joining = read_host(argv[1]);
    char *joining_name = host_name(argv[1]);
    cpupolicy_change change = {.action = CPUPOLICY_CHANGE_ADD, .name = joining_name, .host = joining};
    bool strands = false;
    status = cpupolicy_plan(hosts, (const char *const *)names, nr, vms, (const char *const *)vm_names,
                            (const char *const *)names, nr, &change, 1, CPUPOLICY_GUEST_HVM, 0, CPUPOLICY_REPORT_TEXT,
                            &strands, NULL, 0, &needed);
    if (status != CPUPOLICY_OK)
        fail("plan", status);
    if (!(text = malloc(needed)))
        return 2;
    status = cpupolicy_plan(hosts, (const char *const *)names, nr, vms, (const char *const *)vm_names,
                            (const char *const *)names, nr, &change, 1, CPUPOLICY_GUEST_HVM, 0, CPUPOLICY_REPORT_TEXT,
                            &strands, text, needed, NULL);
    if (status != CPUPOLICY_OK)
        fail("plan", status);
    fputs(text, stdout);
    free(text);

    cpupolicy_host_free(joining);
    free(joining_name);
    for (size_t i = 0; i < nr; i++) {
        cpupolicy_host_free((cpupolicy_host *)hosts[i]);
        cpupolicy_policy_free((cpupolicy_policy *)vms[i]);
        free(names[i]);
        free(vm_names[i]);
    }
    free(hosts);
    free(vms);
    free(names);
    free(vm_names);
    return strands ? 1 : 0;
}
