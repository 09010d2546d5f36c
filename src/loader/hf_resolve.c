/* hf://org/name -> a snapshot directory of the local Hugging Face hub cache.
 *
 * Cache layout (huggingface_hub): <cache>/models--ORG--NAME/{refs/main, snapshots/<commit>/...}.
 * Snapshot files are usually symlinks into ../../blobs; they are followed like any file. Nothing
 * is downloaded: a model that is not in the cache is an error listing where we looked. */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "caramba/fileio.h"
#include "caramba/hf.h"

#define HF_PATH 4096

/* snprintf that reports truncation (paths that do not fit are treated as absent). */
static int pathf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pathf(char *buf, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return k >= 0 && (size_t)k < n;
}

static int repo_part_ok(const char *s) {
    if (!s[0] || strcmp(s, ".") == 0 || strstr(s, "..")) return 0;
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_' || *c == '.'))
            return 0;
    return 1;
}

/* A commit name read from refs/main or found under snapshots/: one plain path component. */
static int rev_ok(const char *s) {
    return s[0] && s[0] != '.' && !strchr(s, '/') && strlen(s) < 256;
}

/* Picks the snapshot of repo_dir: refs/main's commit when that snapshot exists, else the only
 * (or most recently modified) one. Returns 1 and writes the directory into out on success. */
static int pick_snapshot(const char *repo_dir, char *out, size_t n) {
    char p[HF_PATH];
    char *ref = NULL;
    size_t len = 0;
    if (pathf(p, sizeof p, "%s/refs/main", repo_dir) && cb_file_exists(p) &&
        cb_read_file(p, 1024, &ref, &len) == CB_OK) {
        while (len && (ref[len - 1] == '\n' || ref[len - 1] == '\r' || ref[len - 1] == ' '))
            ref[--len] = 0;
        int ok = rev_ok(ref) && pathf(out, n, "%s/snapshots/%s", repo_dir, ref) && cb_is_dir(out);
        free(ref);
        if (ok) return 1;
    }
    if (!pathf(p, sizeof p, "%s/snapshots", repo_dir)) return 0;
    DIR *d = opendir(p);
    if (!d) return 0;
    char best[256] = "";
    struct timespec best_t = {0, 0};
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!rev_ok(de->d_name)) continue;
        char full[HF_PATH];
        struct stat sb;
        if (!pathf(full, sizeof full, "%s/%s", p, de->d_name) || stat(full, &sb) != 0 ||
            !S_ISDIR(sb.st_mode))
            continue;
        struct timespec t = sb.st_mtim;
        int newer = !best[0] || t.tv_sec > best_t.tv_sec ||
                    (t.tv_sec == best_t.tv_sec && t.tv_nsec > best_t.tv_nsec) ||
                    (t.tv_sec == best_t.tv_sec && t.tv_nsec == best_t.tv_nsec &&
                     strcmp(de->d_name, best) > 0);
        if (newer) {
            pathf(best, sizeof best, "%s", de->d_name);
            best_t = t;
        }
    }
    closedir(d);
    if (!best[0]) return 0;
    return pathf(out, n, "%s/%s", p, best);
}

static void add_root(char roots[4][HF_PATH], int *n, const char *a, const char *b) {
    if (!a || !a[0]) return;
    if (!pathf(roots[*n], HF_PATH, "%s%s", a, b)) return;
    for (int i = 0; i < *n; i++)
        if (strcmp(roots[i], roots[*n]) == 0) return;
    (*n)++;
}

static cb_status resolve_hub(const char *model, char *out, size_t n) {
    const char *spec = model + 5;
    while (*spec == '/') spec++;
    /* org / name [/ path inside the repo] */
    char org[128], name[128];
    const char *s1 = strchr(spec, '/');
    if (!s1 || (size_t)(s1 - spec) >= sizeof org)
        return cb_fail(CB_ERR_ARG, "%s: expected hf://org/name", model);
    memcpy(org, spec, (size_t)(s1 - spec));
    org[s1 - spec] = 0;
    const char *nm = s1 + 1;
    const char *s2 = strchr(nm, '/');
    size_t nlen = s2 ? (size_t)(s2 - nm) : strlen(nm);
    if (nlen >= sizeof name) return cb_fail(CB_ERR_ARG, "%s: repository name too long", model);
    memcpy(name, nm, nlen);
    name[nlen] = 0;
    if (!repo_part_ok(org) || !repo_part_ok(name))
        return cb_fail(CB_ERR_ARG,
                       "%s: expected hf://org/name with letters, digits, '-', '_' or '.' in each "
                       "part",
                       model);
    /* Optional file path inside the snapshot: plain components only. */
    char sub[1024] = "";
    if (s2) {
        const char *p = s2 + 1;
        size_t off = 0;
        while (*p) {
            while (*p == '/') p++;
            if (!*p) break;
            const char *e = strchr(p, '/');
            size_t cl = e ? (size_t)(e - p) : strlen(p);
            if ((cl == 1 && p[0] == '.') || (cl == 2 && p[0] == '.' && p[1] == '.'))
                return cb_fail(CB_ERR_ARG, "%s: '.' and '..' are not allowed in the path", model);
            if (off + cl + 2 >= sizeof sub) return cb_fail(CB_ERR_ARG, "%s: path too long", model);
            sub[off++] = '/';
            memcpy(sub + off, p, cl);
            off += cl;
            sub[off] = 0;
            p += cl;
        }
    }
    char roots[4][HF_PATH];
    int nroots = 0;
    add_root(roots, &nroots, getenv("HF_HUB_CACHE"), "");
    add_root(roots, &nroots, getenv("HF_HOME"), "/hub");
    add_root(roots, &nroots, getenv("XDG_CACHE_HOME"), "/huggingface/hub");
    add_root(roots, &nroots, getenv("HOME"), "/.cache/huggingface/hub");
    char tried[4 * (HF_PATH + 40)] = "";
    size_t toff = 0;
    for (int i = 0; i < nroots; i++) {
        char repo[HF_PATH], snap[HF_PATH], full[HF_PATH];
        const char *why = NULL;
        if (!pathf(repo, sizeof repo, "%s/models--%s--%s", roots[i], org, name))
            why = "path too long";
        else if (!cb_is_dir(repo))
            why = "no such directory";
        else if (!pick_snapshot(repo, snap, sizeof snap))
            why = "no snapshot";
        else if (!pathf(full, sizeof full, "%s%s", snap, sub))
            why = "path too long";
        else if (sub[0] && !cb_file_exists(full)) {
            why = "file not in the snapshot";
            memcpy(repo, full, sizeof repo);
        } else {
            if (strlen(full) >= n)
                return cb_fail(CB_ERR_ARG, "%s: resolved path longer than %zu bytes", model, n - 1);
            memcpy(out, full, strlen(full) + 1);
            return CB_OK;
        }
        if (pathf(tried + toff, sizeof tried - toff, "%s%s (%s)", toff ? ", " : "", repo, why))
            toff += strlen(tried + toff);
    }
    return cb_fail(CB_ERR_NOTFOUND,
                   "%s: not in the local Hugging Face cache (caramba never downloads; fetch it "
                   "with `huggingface-cli download %s/%s` or set HF_HOME); tried: %s",
                   model, org, name,
                   nroots ? tried : "nothing (HF_HUB_CACHE, HF_HOME and HOME unset)");
}

cb_status cb_hf_resolve(const char *model, char *out, size_t n) {
    if (!model || !out || n == 0) return cb_fail(CB_ERR_ARG, "cb_hf_resolve: NULL argument");
    out[0] = 0;
    if (!model[0]) return cb_fail(CB_ERR_ARG, "empty model path");
    if (strncmp(model, "hf://", 5) == 0) return resolve_hub(model, out, n);
    if (!cb_file_exists(model))
        return cb_fail(CB_ERR_NOTFOUND,
                       "%s: no such file or directory (a model is a local directory or "
                       "hf://org/name)",
                       model);
    if (strlen(model) >= n)
        return cb_fail(CB_ERR_ARG, "%s: path longer than %zu bytes", model, n - 1);
    memcpy(out, model, strlen(model) + 1);
    return CB_OK;
}
