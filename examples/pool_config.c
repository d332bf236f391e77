/* Apply a levelled pool with the tools people run: the xl `cpuid=` line and the libvirt
 * `<cpu mode='host-passthrough'>` element that give the pool default's features on every host,
 * what they cannot express, and what a VM gets on each host from the xl line.
 *
 *   cc pool_config.c $(pkg-config --cflags --libs cpupolicy) -o pool_config
 *   ./pool_config 4.17 host1.json host2.json xen-cpuid-p-of-host3.txt
 *
 * The first argument is the Xen release whose libxl reads the configuration; each file a JSON
 * host bundle or `xen-cpuid -p` output (HVM guests). Exit status 0, or 2 with a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cpupolicy.h>

static void fail(const char *what, cpupolicy_status status)
{
    char message[1024] = "";
    cpupolicy_last_error(message, sizeof(message), NULL);
    fprintf(stderr, "pool_config: %s: %s: %s\n", what, cpupolicy_strerror(status), message);
    exit(2);
}

/* Text from a size-query function of a pool (caller frees). */
static char *pool_text(cpupolicy_status (*f)(const cpupolicy_pool *, cpupolicy_config_form, const char *, char *,
                                             size_t, size_t *),
                       const cpupolicy_pool *pool, cpupolicy_config_form form, const char *xen)
{
    size_t needed = 0;
    cpupolicy_status status = f(pool, form, xen, NULL, 0, &needed);
    if (status != CPUPOLICY_OK)
        fail("size query", status);
    char *text = malloc(needed);
    if (!text || (status = f(pool, form, xen, text, needed, NULL)) != CPUPOLICY_OK)
        fail("configuration", status);
    return text;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: pool_config XEN_VERSION HOST...\n");
        return 2;
    }
    const char *xen = argv[1];
    size_t nr_hosts = (size_t)(argc - 2);
    cpupolicy_host **hosts = calloc(nr_hosts, sizeof(*hosts));
    if (!hosts)
        return 2;
    for (size_t i = 0; i < nr_hosts; i++) {
        cpupolicy_status status = cpupolicy_host_read(argv[i + 2], &hosts[i]);
        if (status != CPUPOLICY_OK)
            fail(argv[i + 2], status);
    }
    cpupolicy_pool *pool;
    cpupolicy_status status =
        cpupolicy_level((const cpupolicy_host *const *)hosts, NULL, nr_hosts, CPUPOLICY_GUEST_HVM, 0, &pool);
    if (status != CPUPOLICY_OK)
        fail("level", status);

    char *xl = pool_text(cpupolicy_pool_config, pool, CPUPOLICY_CONFIG_XL, xen);
    char *notes = pool_text(cpupolicy_pool_config_notes, pool, CPUPOLICY_CONFIG_XL, xen);
    char *libvirt = pool_text(cpupolicy_pool_config, pool, CPUPOLICY_CONFIG_LIBVIRT_DOMAIN, xen);
    printf("%s%s", xl, libvirt);
    fprintf(stderr, "%s", notes);

    /* What a VM created from the xl line gets on each host. */
    for (size_t i = 0; i < nr_hosts; i++) {
        cpupolicy_policy *vm;
        if ((status = cpupolicy_xl_apply(hosts[i], CPUPOLICY_GUEST_HVM, xen, xl, &vm)) != CPUPOLICY_OK)
            fail("xl apply", status);
        size_t needed;
        if ((status = cpupolicy_policy_to_json(vm, NULL, 0, &needed)) != CPUPOLICY_OK)
            fail("json", status);
        char *json = malloc(needed);
        if (!json || (status = cpupolicy_policy_to_json(vm, json, needed, NULL)) != CPUPOLICY_OK)
            fail("json", status);
        printf("applied on host %zu:\n%s", i + 1, json);
        free(json);
        cpupolicy_policy_free(vm);
    }
    free(xl);
    free(notes);
    free(libvirt);
    cpupolicy_pool_free(pool);
    for (size_t i = 0; i < nr_hosts; i++)
        cpupolicy_host_free(hosts[i]);
    free(hosts);
    return 0;
}
