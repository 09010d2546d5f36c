/* Console progress: an in-place bar on a terminal, plain periodic lines otherwise (stderr). */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "caramba/instrument.h"

double cb_clock_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

char *cb_fmt_duration(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, n, "?");
        return buf;
    }
    long long t = (long long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%lldh%02lldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, n, "%lldm%02llds", t / 60, t % 60);
    else snprintf(buf, n, "%llds", t);
    return buf;
}

void cb_progress_start(cb_progress *p, const char *label, int64_t begin, int64_t total,
                       bool enabled) {
    memset(p, 0, sizeof *p);
    p->label = label;
    p->begin = p->done = begin;
    p->total = total;
    p->f = stderr;
    p->enabled = enabled && total > 0;
    p->tty = isatty(fileno(stderr)) != 0;
    p->t0 = p->last_line = cb_clock_seconds();
    p->last_draw = -1;
    p->last_decile = total > 0 ? (int)(10 * begin / total) : 0;
}

static void draw(cb_progress *p, const char *fields, bool final) {
    double now = cb_clock_seconds(), el = now - p->t0;
    double frac = p->total > 0 ? (double)p->done / (double)p->total : 1;
    if (frac > 1) frac = 1;
    int64_t did = p->done - p->begin;
    double eta = did > 0 ? el / (double)did * (double)(p->total - p->done) : -1;
    char e1[16], e2[16];
    cb_fmt_duration(el, e1, sizeof e1);
    cb_fmt_duration(eta, e2, sizeof e2);
    if (p->tty) {
        char bar[25];
        int fill = (int)(frac * 24 + 0.5);
        for (int i = 0; i < 24; i++) bar[i] = i < fill ? '#' : '-';
        bar[24] = 0;
        fprintf(p->f, "\r\033[K%s [%s] %3.0f%% %lld/%lld %s%s elapsed %s%s%s%s", p->label, bar,
                frac * 100, (long long)p->done, (long long)p->total, fields ? fields : "",
                fields && *fields ? " |" : "", e1, final ? "" : " ETA ", final ? "" : e2,
                final ? "\n" : "");
    } else {
        fprintf(p->f, "%s %lld/%lld (%3.0f%%) %s%s elapsed %s%s%s\n", p->label, (long long)p->done,
                (long long)p->total, frac * 100, fields ? fields : "", fields && *fields ? " |" : "",
                e1, final ? "" : " ETA ", final ? "" : e2);
    }
    fflush(p->f);
    p->drawn = !final;
    p->last_draw = p->last_line = now;
}

void cb_progress_update(cb_progress *p, int64_t done, const char *fields) {
    if (!p->enabled) return;
    p->done = done;
    double now = cb_clock_seconds();
    if (p->tty) {
        if (now - p->last_draw >= 0.125) draw(p, fields, false);
        return;
    }
    int decile = (int)(10 * done / p->total);
    if (decile > p->last_decile || now - p->last_line >= 30) {
        p->last_decile = decile;
        draw(p, fields, false);
    }
}

void cb_progress_finish(cb_progress *p, const char *fields) {
    if (!p->enabled) return;
    draw(p, fields, true);
    p->enabled = false;
}
