/* otp.h — the whole public API of libotp. */
#ifndef OTP_H
#define OTP_H

#include "otp/common.h"
#include "otp/term.h"
#include "otp/etf.h"
#include "otp/text.h"
#include "otp/struct.h"
#include "otp/runtime.h"
#include "otp/gen_server.h"
#include "otp/epmd.h"
#include "otp/node.h"

#endif
