// The built-in gradient estimators moved to sde/estimators/ (one file each, and a registry table); this
// header is kept for the programs that include it.
#pragma once

#include "sde/estimators/estimators.hpp"
