/* Decode a featureset and ask about one feature, as a toolstack would.
 *
 *   cc featureset.c $(pkg-config --cflags --libs cpupolicy) -o featureset
 *   ./featureset 178bfbfd:80002001:2193fbfd:00000007 sse3
 */
#include <stdio.h>
#include <stdlib.h>

#include <cpupolicy.h>

static void fail(const char *what, cpupolicy_status status)
{
    char message[256];
    if (cpupolicy_last_error(message, sizeof(message), NULL) != CPUPOLICY_OK)
        message[0] = '\0';
    fprintf(stderr, "%s: %s: %s\n", what, cpupolicy_strerror(status), message);
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s FEATURESET FEATURE\n", argv[0]);
        return 2;
    }

    cpupolicy_featureset *fs;
    cpupolicy_status status = cpupolicy_featureset_parse(argv[1], &fs);
    if (status != CPUPOLICY_OK)
        fail(argv[1], status);

    /* Size query, then the real call. */
    size_t needed;
    status = cpupolicy_featureset_decode(fs, NULL, 0, &needed);
    if (status != CPUPOLICY_OK)
        fail("decode", status);
    char *text = malloc(needed);
    if (!text)
        return 2;
    status = cpupolicy_featureset_decode(fs, text, needed, NULL);
    if (status != CPUPOLICY_OK)
        fail("decode", status);
    fputs(text, stdout);
    free(text);

    bool present;
    status = cpupolicy_featureset_contains(fs, argv[2], &present);
    if (status != CPUPOLICY_OK)
        fail(argv[2], status);
    printf("%s: %s\n", argv[2], present ? "present" : "absent");

    cpupolicy_featureset_free(fs);
    return 0;
}
