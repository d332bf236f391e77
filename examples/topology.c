/* A guest's vCPU topology: every vCPU's APIC ID and the CPUID leaves that describe its place,
 * then the topology written into a real host's HVM default policy, as a toolstack does before
 * it sets a new domain's policy.
 *
 *   cc topology.c $(pkg-config --cflags --libs cpupolicy) -o topology
 *   ./topology intel|amd|hygon PACKAGES CORES THREADS [HOST_FILE XEN_VERSION]
 *
 * HOST_FILE is a JSON host bundle or `xen-cpuid -p` output; XEN_VERSION (e.g. 4.20) is the Xen
 * the policy is for: leaves its format cannot carry are refused. Exit status 0, or 2 on error.
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
    fprintf(stderr, "topology: %s: %s: %s\n", what, cpupolicy_strerror(status), message);
    exit(2);
}

static void print_leaf(const char *indent, const cpupolicy_cpuid_leaf *l)
{
    printf("%s%08x:%08x -> %08x:%08x:%08x:%08x\n", indent, l->leaf, l->subleaf, l->a, l->b, l->c, l->d);
}

/* vCPU `vcpu`'s topology leaves against `base` (NULL: a policy naming only the vendor). */
static cpupolicy_cpuid_leaf *vcpu_leaves(const cpupolicy_topology *t, const cpupolicy_policy *base, uint32_t vcpu,
                                         size_t *count)
{
    cpupolicy_status status = cpupolicy_topology_vcpu_leaves(t, base, vcpu, NULL, 0, count);
    if (status != CPUPOLICY_OK)
        fail("vcpu leaves", status);
    cpupolicy_cpuid_leaf *leaves = calloc(*count ? *count : 1, sizeof(*leaves));
    if (!leaves || (status = cpupolicy_topology_vcpu_leaves(t, base, vcpu, leaves, *count, NULL)) != CPUPOLICY_OK)
        fail("vcpu leaves", status);
    return leaves;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 7) {
        fprintf(stderr, "usage: %s intel|amd|hygon PACKAGES CORES THREADS [HOST_FILE XEN_VERSION]\n", argv[0]);
        return 2;
    }
    cpupolicy_vendor vendor;
    if (strcmp(argv[1], "intel") == 0)
        vendor = CPUPOLICY_VENDOR_INTEL;
    else if (strcmp(argv[1], "amd") == 0)
        vendor = CPUPOLICY_VENDOR_AMD;
    else if (strcmp(argv[1], "hygon") == 0)
        vendor = CPUPOLICY_VENDOR_HYGON;
    else {
        fprintf(stderr, "topology: unknown vendor '%s'\n", argv[1]);
        return 2;
    }
    cpupolicy_shape shape = {
        .packages = (uint32_t)strtoul(argv[2], NULL, 0),
        .dies_per_package = 1,
        .tiles_per_die = 1,
        .modules_per_tile = 1,
        .cores_per_module = (uint32_t)strtoul(argv[3], NULL, 0),
        .threads_per_core = (uint32_t)strtoul(argv[4], NULL, 0),
    };

    cpupolicy_topology *t;
    cpupolicy_status status = cpupolicy_topology_new(&shape, vendor, CPUPOLICY_SCHEME_MODERN, true, &t);
    if (status != CPUPOLICY_OK)
        fail("shape", status);

    /* The table `cpupolicy topology --leaves` prints: one row per vCPU, its leaves below it. */
    uint32_t vcpus;
    if ((status = cpupolicy_topology_vcpu_count(t, &vcpus)) != CPUPOLICY_OK)
        fail("vcpu count", status);
    printf("%5s %8s %8s %5s %5s %7s %9s\n", "vcpu", "apic_id", "package", "die", "core", "thread", "vp_index");
    for (uint32_t v = 0; v < vcpus; v++) {
        cpupolicy_vcpu_info info;
        if ((status = cpupolicy_topology_vcpu(t, v, &info)) != CPUPOLICY_OK)
            fail("vcpu", status);
        char apic[16];
        snprintf(apic, sizeof(apic), "0x%x", info.apic_id);
        printf("%5u %8s %8u %5u %5u %7u %9u\n", info.vcpu, apic, info.package, info.die, info.core, info.thread,
               info.vp_index);
        size_t count;
        cpupolicy_cpuid_leaf *leaves = vcpu_leaves(t, NULL, v, &count);
        for (size_t i = 0; i < count; i++)
            if (leaves[i].leaf != 0)
                print_leaf("        ", &leaves[i]);
        free(leaves);
    }
    bool x2apic;
    if ((status = cpupolicy_topology_x2apic_required(t, &x2apic)) != CPUPOLICY_OK)
        fail("x2apic", status);
    printf("x2apic required: %s\n", x2apic ? "yes" : "no");

    /* The APIC IDs alone, as a toolstack hands them to the device model. */
    size_t nr_ids;
    if ((status = cpupolicy_topology_apic_ids(t, NULL, 0, &nr_ids)) != CPUPOLICY_OK)
        fail("apic ids", status);
    uint32_t *ids = calloc(nr_ids ? nr_ids : 1, sizeof(*ids));
    if (!ids || (status = cpupolicy_topology_apic_ids(t, ids, nr_ids, NULL)) != CPUPOLICY_OK)
        fail("apic ids", status);
    printf("apic ids:");
    for (size_t i = 0; i < nr_ids; i++)
        printf(" %u", ids[i]);
    printf("\n");

    /* The record the VM's migration stream carries, read back as the destination does. */
    size_t record_size;
    if ((status = cpupolicy_topology_record(t, NULL, 0, &record_size)) != CPUPOLICY_OK)
        fail("record", status);
    uint8_t *record = malloc(record_size);
    if (!record || (status = cpupolicy_topology_record(t, record, record_size, NULL)) != CPUPOLICY_OK)
        fail("record", status);
    cpupolicy_topology *arrived;
    if ((status = cpupolicy_topology_from_record(record, record_size, vendor, vcpus, true, &arrived)) != CPUPOLICY_OK)
        fail("record read back", status);
    uint32_t *arrived_ids = calloc(nr_ids ? nr_ids : 1, sizeof(*arrived_ids));
    if (!arrived_ids || (status = cpupolicy_topology_apic_ids(arrived, arrived_ids, nr_ids, NULL)) != CPUPOLICY_OK)
        fail("apic ids", status);
    printf("migration record: %zu bytes, read back with %s APIC IDs\n", record_size,
           memcmp(ids, arrived_ids, nr_ids * sizeof(*ids)) == 0 ? "the same" : "DIFFERENT");
    free(arrived_ids);
    free(record);
    free(ids);
    cpupolicy_topology_free(arrived);

    if (argc == 7) {
        cpupolicy_host *host;
        if ((status = cpupolicy_host_read(argv[5], &host)) != CPUPOLICY_OK)
            fail("host", status);
        cpupolicy_policy *policy;
        if ((status = cpupolicy_host_policy(host, CPUPOLICY_SYSTEM_HVM_DEFAULT, &policy)) != CPUPOLICY_OK)
            fail("HVM default policy", status);
        cpupolicy_host_free(host);

        uint64_t max_basic;
        if ((status = cpupolicy_policy_field(policy, CPUPOLICY_FIELD_MAX_BASIC_LEAF, &max_basic)) != CPUPOLICY_OK)
            fail("max basic leaf", status);
        if (max_basic < 0xb)
            printf("note: the policy's max basic leaf %#llx hides leaf 0xb from the guest\n",
                   (unsigned long long)max_basic);

        if ((status = cpupolicy_topology_apply(t, policy, argv[6])) != CPUPOLICY_OK)
            fail("apply", status);

        /* What the domain's policy now holds for each topology leaf (vCPU 0's view). */
        printf("applied to the HVM default policy of %s (Xen %s):\n", argv[5], argv[6]);
        size_t count;
        cpupolicy_cpuid_leaf *leaves = vcpu_leaves(t, policy, 0, &count);
        for (size_t i = 0; i < count; i++) {
            cpupolicy_cpuid_leaf held;
            if ((status = cpupolicy_policy_cpuid(policy, leaves[i].leaf, leaves[i].subleaf, &held)) != CPUPOLICY_OK)
                fail("cpuid", status);
            if (held.a | held.b | held.c | held.d)
                print_leaf("  ", &held);
        }
        free(leaves);
        cpupolicy_policy_free(policy);
    }

    cpupolicy_topology_free(t);
    return 0;
}
