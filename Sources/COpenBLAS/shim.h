#ifndef DEBERTA_COPENBLAS_SHIM_H
#define DEBERTA_COPENBLAS_SHIM_H
#include <cblas.h>
#endif
