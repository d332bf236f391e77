/*
 * libxl's own parser as the oracle for `cpupolicy level --format xl`: reads a cpuid= value the
 * way xl does and prints what libxl keeps (libxl_cpuid_policy_list_gen_json): per leaf the
 * 32-character filters, per MSR the 64-character one.
 *
 *   xl_oracle names 'host,NAME=VALUE,...'     libxl_cpuid_parse_config for each NAME=VALUE
 *   xl_oracle list 'LEAF:eXx=...' ...         libxl_cpuid_parse_config_xend for each item
 *   xl_oracle setting FILE                    the cpuid setting libxlutil reads from an xl
 *                                             config file, as xl_parse.c asks for it (a list,
 *                                             else a string), printed as a cpuid= value
 *
 * Exit 2, naming the token, when libxl refuses one (as xl does); 2 too when libxlutil cannot
 * read the file, 3 when it holds no cpuid setting.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxl.h>
#include <libxl_json.h>
#include <libxlutil.h>

/* The cpuid setting of an xl config file as libxlutil gives it to xl (xl_parse.c asks for a
 * list first, then a string): `['item', ...]` or `"string"` on standard output. */
static int setting(const char *path)
{
    XLU_Config *cfg = xlu_cfg_init(stderr, path);
    XLU_ConfigList *items;
    const char *value, *item;
    int i, status = 0;

    if (!cfg) {
        fprintf(stderr, "xl_oracle: xlu_cfg_init failed\n");
        return 1;
    }
    if (xlu_cfg_readfile(cfg, path)) {
        fprintf(stderr, "xl_oracle: libxlutil cannot read %s\n", path);
        status = 2;
    } else if (!xlu_cfg_get_list(cfg, "cpuid", &items, 0, 1)) {
        printf("[");
        for (i = 0; (item = xlu_cfg_get_listitem(items, i)) != NULL; i++)
            printf("%s'%s'", i ? ", " : "", item);
        printf("]\n");
    } else if (!xlu_cfg_get_string(cfg, "cpuid", &value, 1)) {
        printf("\"%s\"\n", value);
    } else {
        status = 3;
    }
    xlu_cfg_destroy(cfg);
    return status;
}

int main(int argc, char **argv)
{
    libxl_cpuid_policy_list list = NULL;
    int i;

    if (argc == 3 && !strcmp(argv[1], "setting"))
        return setting(argv[2]);
    if (argc < 3 || (strcmp(argv[1], "names") && strcmp(argv[1], "list"))) {
        fprintf(stderr, "usage: xl_oracle names VALUE | xl_oracle list ITEM... | xl_oracle setting FILE\n");
        return 2;
    }
    if (!strcmp(argv[1], "names")) {
        char *copy = strdup(argv[2]), *save = NULL;
        char *token = strtok_r(copy, ",", &save);
        if (!token || strcmp(token, "host")) {
            fprintf(stderr, "xl_oracle: first word must be \"host\"\n");
            return 2;
        }
        while ((token = strtok_r(NULL, ",", &save)) != NULL) {
            int e = libxl_cpuid_parse_config(&list, token);
            if (e) {
                fprintf(stderr, "xl_oracle: libxl refuses '%s' (error %d)\n", token, e);
                return 2;
            }
        }
        free(copy);
    } else {
        for (i = 2; i < argc; i++) {
            int e = libxl_cpuid_parse_config_xend(&list, argv[i]);
            if (e) {
                fprintf(stderr, "xl_oracle: libxl refuses '%s' (error %d)\n", argv[i], e);
                return 2;
            }
        }
    }

    yajl_gen hand = yajl_gen_alloc(NULL);
    if (!hand || libxl_cpuid_policy_list_gen_json(hand, &list) != yajl_gen_status_ok) {
        fprintf(stderr, "xl_oracle: cannot render the policy list\n");
        return 1;
    }
    const unsigned char *buf;
    size_t len;
    yajl_gen_get_buf(hand, &buf, &len);
    printf("%.*s\n", (int)len, buf);
    yajl_gen_free(hand);
    libxl_cpuid_dispose(&list);
    return 0;
}
