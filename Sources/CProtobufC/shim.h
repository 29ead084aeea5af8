#ifndef DEBERTA_CPROTOBUFC_SHIM_H
#define DEBERTA_CPROTOBUFC_SHIM_H
#include <protobuf-c/protobuf-c.h>
#endif
