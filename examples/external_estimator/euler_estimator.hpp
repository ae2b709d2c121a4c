#pragma once

// Registers "user_euler": an estimator written outside sdeuq (its own Ito Euler-Maruyama loop, the
// gradient by the tape through it).
void register_user_euler();
