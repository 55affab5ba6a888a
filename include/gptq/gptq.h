// gptq.cpp: the whole public API.
#pragma once

#include "gptq/error.h"
#include "gptq/eval.h"
#include "gptq/export.h"
#include "gptq/generate.h"
#include "gptq/model.h"
#include "gptq/progress.h"
#include "gptq/quantize.h"
#include "gptq/runtime.h"
#include "gptq/tensor.h"
#include "gptq/tokenizer.h"
