/* hwy_timer: preloaded into silklive under valgrind only. libavcodec pulls in libjxl's Highway,
 * whose load-time timer calibration executes an instruction valgrind 3.19 does not emulate on
 * this CPU (SIGILL before main). Its result only tunes Highway's benchmarks. */
#include <stdint.h>

uint64_t _ZN3hwy8platform15TimerResolutionEv(void);

uint64_t _ZN3hwy8platform15TimerResolutionEv(void)
{
    return 1;
}
