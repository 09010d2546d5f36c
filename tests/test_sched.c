/* Learning-rate schedules against their formulas (docs/training.md, spec-train §4.10): warmup
 * (t+1)/W, then linear / cosine decay to the floor min_lr_ratio over T - W updates, constant,
 * none. Expected values are written out by hand at the points where the formulas are easy to
 * evaluate (quarter, half, end), plus a sweep against the closed form. */
#include <math.h>
#include <stdio.h>

#include "caramba/trainer.h"
#include "testutil.h"

static double f(cb_cfg_sched k, int64_t W, int64_t T, double r, int64_t t) {
    cb_schedule s = {.kind = k, .base_lr = 1.0, .warmup = W, .total = T, .min_ratio = r};
    return cb_schedule_factor(&s, t);
}

static void test_hand_values(void **state) {
    (void)state;
    /* cosine, W = 10, T = 110, floor 0.1: decay over D = 100 updates */
    assert_true(fabs(f(CB_CFG_SCHED_COSINE, 10, 110, 0.1, 0) - 0.1) < 1e-15);  /* 1/10 */
    assert_true(fabs(f(CB_CFG_SCHED_COSINE, 10, 110, 0.1, 4) - 0.5) < 1e-15);  /* 5/10 */
    assert_true(fabs(f(CB_CFG_SCHED_COSINE, 10, 110, 0.1, 9) - 1.0) < 1e-15);  /* 10/10 */
    assert_true(fabs(f(CB_CFG_SCHED_COSINE, 10, 110, 0.1, 10) - 1.0) < 1e-15); /* f = 0 */
    assert_true(fabs(f(CB_CFG_SCHED_COSINE, 10, 110, 0.1, 35) - (0.1 + 0.9 * 0.5 * (1 + sqrt(0.5)))) < 1e-12);
    assert_true(fabs(f(CB_CFG_SCHED_COSINE, 10, 110, 0.1, 60) - 0.55) < 1e-12); /* cos(pi/2) = 0 */
    assert_true(fabs(f(CB_CFG_SCHED_COSINE, 10, 110, 0.1, 85) - (0.1 + 0.9 * 0.5 * (1 - sqrt(0.5)))) < 1e-12);
    assert_true(fabs(f(CB_CFG_SCHED_COSINE, 10, 110, 0.1, 110) - 0.1) < 1e-15); /* f = 1: the floor */
    assert_true(fabs(f(CB_CFG_SCHED_COSINE, 10, 110, 0.1, 500) - 0.1) < 1e-15); /* stays there */
    /* linear, same shape */
    assert_true(fabs(f(CB_CFG_SCHED_LINEAR, 10, 110, 0.1, 4) - 0.5) < 1e-15);
    assert_true(fabs(f(CB_CFG_SCHED_LINEAR, 10, 110, 0.1, 10) - 1.0) < 1e-15);
    assert_true(fabs(f(CB_CFG_SCHED_LINEAR, 10, 110, 0.1, 35) - 0.775) < 1e-12);
    assert_true(fabs(f(CB_CFG_SCHED_LINEAR, 10, 110, 0.1, 60) - 0.55) < 1e-12);
    assert_true(fabs(f(CB_CFG_SCHED_LINEAR, 10, 110, 0.1, 109) - 0.109) < 1e-12);
    assert_true(fabs(f(CB_CFG_SCHED_LINEAR, 10, 110, 0.1, 110) - 0.1) < 1e-15);
    /* linear to zero without warmup: 1 - t/T */
    assert_true(fabs(f(CB_CFG_SCHED_LINEAR, 0, 4, 0.0, 0) - 1.0) < 1e-15);
    assert_true(fabs(f(CB_CFG_SCHED_LINEAR, 0, 4, 0.0, 1) - 0.75) < 1e-15);
    assert_true(fabs(f(CB_CFG_SCHED_LINEAR, 0, 4, 0.0, 3) - 0.25) < 1e-15);
    /* constant: warmup, then 1 (the floor does not apply) */
    assert_true(fabs(f(CB_CFG_SCHED_CONSTANT, 4, 100, 0.5, 0) - 0.25) < 1e-15);
    assert_true(fabs(f(CB_CFG_SCHED_CONSTANT, 4, 100, 0.5, 3) - 1.0) < 1e-15);
    assert_true(fabs(f(CB_CFG_SCHED_CONSTANT, 4, 100, 0.5, 99) - 1.0) < 1e-15);
    /* none: the manifest's lr, warmup and floor ignored */
    for (int64_t t = 0; t < 50; t++) assert_true(f(CB_CFG_SCHED_NONE, 10, 40, 0.3, t) == 1.0);
    /* warmup longer than the run: D = max(1, T - W) = 1, decay is immediate after warmup */
    assert_true(fabs(f(CB_CFG_SCHED_COSINE, 8, 4, 0.2, 3) - 0.5) < 1e-15);
    assert_true(fabs(f(CB_CFG_SCHED_COSINE, 8, 4, 0.2, 8) - 1.0) < 1e-15);
    assert_true(fabs(f(CB_CFG_SCHED_COSINE, 8, 4, 0.2, 9) - 0.2) < 1e-15);
    /* cb_schedule_lr scales by the base rate */
    cb_schedule s = {.kind = CB_CFG_SCHED_LINEAR, .base_lr = 3e-3, .warmup = 0, .total = 4, .min_ratio = 0};
    assert_true(fabs(cb_schedule_lr(&s, 2) - 1.5e-3) < 1e-18);
    assert_string_equal(cb_schedule_name(CB_CFG_SCHED_COSINE), "cosine");
    assert_string_equal(cb_schedule_name(CB_CFG_SCHED_NONE), "none");
}

/* Sweep: every t against the closed form written independently here. */
static void test_sweep(void **state) {
    (void)state;
    const cb_cfg_sched kinds[] = {CB_CFG_SCHED_LINEAR, CB_CFG_SCHED_COSINE, CB_CFG_SCHED_CONSTANT};
    const int64_t Ws[] = {0, 1, 7, 30};
    const int64_t Ts[] = {1, 10, 97, 200};
    const double rs[] = {0, 0.05, 0.5, 1};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 4; c++)
                for (int d = 0; d < 4; d++) {
                    int64_t W = Ws[b], T = Ts[c];
                    double r = rs[d];
                    double prev = INFINITY;
                    for (int64_t t = 0; t < T + 5; t++) {
                        double want;
                        if (W > 0 && t < W) {
                            want = (double)(t + 1) / (double)W;
                        } else {
                            double D = T - W > 1 ? (double)(T - W) : 1.0;
                            double p = fmin((double)(t - W), D) / D;
                            want = kinds[a] == CB_CFG_SCHED_LINEAR   ? r + (1 - r) * (1 - p)
                                   : kinds[a] == CB_CFG_SCHED_COSINE ? r + (1 - r) * (1 + cos(M_PI * p)) / 2
                                                                     : 1.0;
                        }
                        double got = f(kinds[a], W, T, r, t);
                        assert_true(fabs(got - want) < 1e-12);
                        /* after warmup the factor never increases, and never drops below the floor */
                        if (t >= W) {
                            assert_true(got <= prev + 1e-15);
                            assert_true(got >= r - 1e-15);
                            prev = got;
                        }
                    }
                }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_values),
        cmocka_unit_test(test_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
