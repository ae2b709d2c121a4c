// CPU time of this process, for the --time-steps cost measurements of sdenet_mnist and sdebnn_classification
// (their full-size step and prediction costs are CPU seconds, summed over all threads, so that the estimate of
// a whole run does not depend on what else the machine was doing).
#pragma once

#include <ctime>

namespace sdeuq::experiment {

// CPU seconds of this process (all threads), CLOCK_PROCESS_CPUTIME_ID.
inline double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

}  // namespace sdeuq::experiment
