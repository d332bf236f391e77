/* The C API's error paths: NULL pointers, short buffers, malformed input, wrong handle types.
 * Prints "errors: all checks passed" and exits 0, or names the failed check and exits 1. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cpupolicy.h>

static int failures;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                    \
        }                                                                  \
    } while (0)

static const char *last_error(void)
{
    static char buf[512];
    size_t needed = 0;
    if (cpupolicy_last_error(buf, sizeof(buf), &needed) != CPUPOLICY_OK)
        return "<last error too long>";
    return buf;
}

int main(void)
{
    cpupolicy_featureset *fs = NULL, *other = NULL;

    /* NULL arguments get a status, never a crash, and name the argument. */
    CHECK(cpupolicy_featureset_parse(NULL, &fs) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "text is NULL") != NULL);
    CHECK(cpupolicy_featureset_parse("1:2", NULL) == CPUPOLICY_INVALID_ARGUMENT);
    /* A NULL out-pointer is refused before the input is read, whatever is wrong with it. */
    CHECK(cpupolicy_featureset_parse("zz", NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "out is NULL") != NULL);
    CHECK(cpupolicy_policy_parse("{", NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_host_parse("{}", NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_policy_parse_pool("{}", 0, NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_featureset_words(NULL, NULL, 0, NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_featureset_free(NULL) == CPUPOLICY_OK);
    CHECK(strcmp(last_error(), "") == 0);

    /* Malformed input names the offending token; the out-pointer is untouched. */
    fs = (cpupolicy_featureset *)0x1;
    CHECK(cpupolicy_featureset_parse("178bfbfd:zz", &fs) == CPUPOLICY_PARSE_ERROR);
    CHECK(fs == (cpupolicy_featureset *)0x1);
    CHECK(strstr(last_error(), "'zz'") != NULL);
    CHECK(cpupolicy_featureset_parse("123456789", &fs) == CPUPOLICY_PARSE_ERROR);
    CHECK(cpupolicy_featureset_parse("178bfbfd-80002001:2193fbfd", &fs) == CPUPOLICY_PARSE_ERROR);
    CHECK(strstr(last_error(), "separator") != NULL);
    CHECK(fs == (cpupolicy_featureset *)0x1);
    /* The empty string is the empty featureset, as xapi stores it for a host without HVM. */
    CHECK(cpupolicy_featureset_parse("", &fs) == CPUPOLICY_OK);
    size_t nr_words = 99;
    CHECK(cpupolicy_featureset_words(fs, NULL, 0, &nr_words) == CPUPOLICY_OK && nr_words == 0);
    cpupolicy_featureset_free(fs);

    CHECK(cpupolicy_featureset_parse("178bfbfd:80002001", &fs) == CPUPOLICY_OK);
    CHECK(strcmp(last_error(), "") == 0);

    /* Unknown feature names. */
    bool present = true;
    CHECK(cpupolicy_featureset_contains(fs, "warp-drive", &present) == CPUPOLICY_UNKNOWN_FEATURE);
    CHECK(strstr(last_error(), "'warp-drive'") != NULL);
    CHECK(present == true);
    CHECK(cpupolicy_featureset_contains(fs, "sse4.1", NULL) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_featureset_set(fs, "no-such", true) == CPUPOLICY_UNKNOWN_FEATURE);

    /* Size query, exact fit, short buffer: never written past. */
    size_t needed = 0;
    CHECK(cpupolicy_featureset_format(fs, ':', NULL, 0, &needed) == CPUPOLICY_OK);
    CHECK(needed == strlen("178bfbfd:80002001") + 1);
    char small[8];
    memset(small, 'X', sizeof(small));
    CHECK(cpupolicy_featureset_format(fs, ':', small, sizeof(small), &needed) == CPUPOLICY_BUFFER_TOO_SMALL);
    for (size_t i = 0; i < sizeof(small); i++)
        CHECK(small[i] == 'X');
    char *exact = malloc(needed);
    CHECK(cpupolicy_featureset_format(fs, '-', exact, needed, NULL) == CPUPOLICY_OK);
    CHECK(strcmp(exact, "178bfbfd-80002001") == 0);
    free(exact);
    CHECK(cpupolicy_featureset_format(fs, '/', NULL, 0, &needed) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(cpupolicy_featureset_format(fs, ':', NULL, 5, &needed) == CPUPOLICY_INVALID_ARGUMENT);
    uint32_t words[1];
    CHECK(cpupolicy_featureset_words(fs, words, 1, &needed) == CPUPOLICY_BUFFER_TOO_SMALL);
    CHECK(needed == 2);

    /* Wrong handle types: anything that is not a featureset handle is refused. */
    uint32_t not_a_handle[4] = { 0x12345678, 0, 0, 0 };
    CHECK(cpupolicy_featureset_words((const cpupolicy_featureset *)not_a_handle, NULL, 0, &needed) == CPUPOLICY_WRONG_HANDLE);
    CHECK(strstr(last_error(), "expected a featureset") != NULL);

    /* Operations allocate new handles the caller owns. */
    CHECK(cpupolicy_static_mask(CPUPOLICY_MASK_PV_MAX, &other) == CPUPOLICY_OK);
    cpupolicy_featureset *both = NULL;
    CHECK(cpupolicy_featureset_combine(fs, CPUPOLICY_SET_INTERSECTION, other, &both) == CPUPOLICY_OK);
    bool equal = true, subset = false;
    CHECK(cpupolicy_featureset_compare(both, fs, &equal, &subset) == CPUPOLICY_OK);
    CHECK(subset && !equal);
    CHECK(cpupolicy_featureset_combine(fs, CPUPOLICY_SET_UNION, NULL, &both) == CPUPOLICY_INVALID_ARGUMENT);
    cpupolicy_featureset *never = NULL;
    CHECK(cpupolicy_featureset_combine(fs, 42, other, &never) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(never == NULL);
    CHECK(cpupolicy_static_mask(1000, &never) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "mask 1000") != NULL);

    /* Dependencies: dropping SSE2 drops SSE3 and long mode. */
    CHECK(cpupolicy_featureset_set(fs, "sse2", false) == CPUPOLICY_OK);
    CHECK(cpupolicy_featureset_apply_dependencies(fs) == CPUPOLICY_OK);
    CHECK(cpupolicy_featureset_contains(fs, "pni", &present) == CPUPOLICY_OK && !present);

    CHECK(strlen(cpupolicy_strerror(CPUPOLICY_BUFFER_TOO_SMALL)) > 0);
    CHECK(strcmp(cpupolicy_version(), "") != 0);

    cpupolicy_featureset_free(both);
    cpupolicy_featureset_free(other);
    cpupolicy_featureset_free(fs);

    /* Freed handles are refused without their memory being read (valgrind and ASan runs of
     * this program would report a read of freed memory), and a double free is refused. */
    CHECK(cpupolicy_featureset_words(fs, NULL, 0, &needed) == CPUPOLICY_WRONG_HANDLE);
    CHECK(strstr(last_error(), "not a live handle") != NULL);
    CHECK(cpupolicy_featureset_free(fs) == CPUPOLICY_WRONG_HANDLE);
    CHECK(cpupolicy_featureset_free((cpupolicy_featureset *)not_a_handle) == CPUPOLICY_WRONG_HANDLE);

    /* Counts no caller can mean are refused before the array is read or anything allocated. */
    uint32_t three[3] = { 1, 2, 3 };
    cpupolicy_featureset *huge = NULL;
    CHECK(cpupolicy_featureset_from_words(three, SIZE_MAX, &huge) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "at most 2048") != NULL);
    CHECK(cpupolicy_featureset_from_words(three, 3, &huge) == CPUPOLICY_OK);
    const cpupolicy_featureset *sets[1] = { huge };
    CHECK(cpupolicy_featureset_level(sets, SIZE_MAX, &both) == CPUPOLICY_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "sets: 18446744073709551615 entries; at most 1048576") != NULL);
    CHECK(cpupolicy_featureset_level(sets, 1, &both) == CPUPOLICY_OK);
    cpupolicy_featureset_free(both);
    cpupolicy_featureset_free(huge);
    CHECK(cpupolicy_featureset_level(sets, 1, &both) == CPUPOLICY_WRONG_HANDLE);

    if (failures) {
        printf("errors: %d checks failed\n", failures);
        return 1;
    }
    printf("errors: all checks passed\n");
    return 0;
}
