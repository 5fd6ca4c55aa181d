# ngx_http_whatsapp_module and whatsapp-worker.
#
#   make run    install what is missing, build, start everything on loopback
#   make test   install what is missing, build, run every test
#
# Builds against Debian's own NGINX (nginx-dev): the module must match the
# installed binary exactly, so no NGINX source is downloaded.

SHELL       := /bin/bash
BUILD       := $(CURDIR)/build
NGX_SRC     := /usr/share/nginx/src
MODULE_SO   := $(BUILD)/ngx_http_whatsapp_module.so
ASAN_SO     := $(BUILD)/asan/ngx_http_whatsapp_module.so
SANITIZE    := -fsanitize=address,undefined -fno-omit-frame-pointer \
               -fno-sanitize-recover=undefined
CFLAGS_TEST := -g -O1 -Wall -Wextra -Werror $(SANITIZE) -Icommon

# What building, running and testing need, all from Debian.
DEB_PKGS := nginx nginx-dev libhiredis-dev libyajl-dev libpq-dev \
            libcurl4-openssl-dev libssl-dev redis-server redis-tools \
            postgresql libinih-dev gcc make clang libclang-rt-14-dev curl \
            wrk perl libprotocol-http2-perl

MODULE_SRCS := config $(wildcard ngx_http_whatsapp_module/*.[ch]) \
               $(wildcard common/*.[ch])

WORKER_SRCS := $(wildcard worker/*.c) common/wa_json.c
WORKER_DEPS := $(WORKER_SRCS) $(wildcard worker/*.h) common/wa_json.h
WORKER_LIBS := -lhiredis -lpq -lyajl -linih -lcurl -lcrypto -lpthread
WORKER      := $(BUILD)/whatsapp-worker
WORKER_ASAN := $(BUILD)/asan/whatsapp-worker
SIM         := $(BUILD)/wa-graph-sim
WORKER_CFLAGS := -Wall -Wextra -Werror -Iworker -Icommon \
                 -I$(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)

.PHONY: all deps build test test-unit test-fuzz test-module test-asan \
        test-worker run \
        bench clean

all: build

deps:
	@missing=$$(for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${db:Status-Status}\n' $$p 2>/dev/null \
	        | grep -qx installed || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	        apt-get install -y -q --no-install-recommends $$missing; \
	fi

build: $(MODULE_SO) $(WORKER) $(SIM)

# $(1): output .so, $(2): build dir, $(3): extra compiler/linker flags
define ngx_module_build
	rm -rf $(2) && mkdir -p $(2) && cp -r $(NGX_SRC)/. $(2)/
	cd $(2) && source ./conf_flags && ./configure \
	    --with-cc-opt="-g -O2 -fPIC -Werror $(3)" \
	    --with-ld-opt="-fPIC $(3)" \
	    "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module=$(CURDIR) \
	    > configure.log 2>&1 || { cat configure.log; exit 1; }
	$(MAKE) -s -C $(2) -f objs/Makefile modules
	# a new file, not the old one rewritten: a running NGINX has it mapped
	cp $(2)/objs/ngx_http_whatsapp_module.so $(1).new && mv -f $(1).new $(1)
endef

$(MODULE_SO): $(MODULE_SRCS) | deps
	$(call ngx_module_build,$@,$(BUILD)/nginx,)

$(ASAN_SO): $(MODULE_SRCS) | deps
	mkdir -p $(BUILD)/asan
	$(call ngx_module_build,$@,$(BUILD)/nginx-asan,$(SANITIZE))

$(BUILD)/unit/%: t/unit/%.c common/*.c common/*.h | deps
	mkdir -p $(BUILD)/unit
	cc $(CFLAGS_TEST) -o $@ $< common/*.c -lcrypto -lyajl

# the worker's pacing has a unit test of its own
$(BUILD)/unit/test_pace: t/unit/test_pace.c worker/wa_pace.[ch] | deps
	mkdir -p $(BUILD)/unit
	cc $(CFLAGS_TEST) -Iworker -It/unit -o $@ $< worker/wa_pace.c

# fuzzers of common/: signature, jwt, send
$(BUILD)/fuzz/fuzz_%: t/fuzz/fuzz_%.c common/*.[ch] | deps
	mkdir -p $(BUILD)/fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Icommon -o $@ \
	    $< common/*.c -lcrypto -lyajl

$(BUILD)/fuzz/fuzz_parse: t/fuzz/fuzz_parse.c worker/wa_parse.[ch] \
                          common/wa_json.[ch] | deps
	mkdir -p $(BUILD)/fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Iworker -Icommon \
	    -o $@ $< worker/wa_parse.c common/wa_json.c -lyajl

# the Graph API simulator (tests, make run, bench/send)
$(SIM): $(wildcard sim/*.[ch]) common/*.[ch] | deps
	mkdir -p $(BUILD)
	cc -g -O2 -Wall -Wextra -Werror -Icommon -o $@ $(wildcard sim/*.c) \
	    common/*.c -lyajl -lcrypto

# whatsapp-worker: a plain build for `make run`, a sanitized one for tests
$(WORKER): $(WORKER_DEPS) | deps
	mkdir -p $(BUILD)
	cc -g -O2 $(WORKER_CFLAGS) -o $@ $(WORKER_SRCS) $(WORKER_LIBS)

$(WORKER_ASAN): $(WORKER_DEPS) | deps
	mkdir -p $(BUILD)/asan
	cc -g -O1 $(SANITIZE) $(WORKER_CFLAGS) -o $@ $(WORKER_SRCS) $(WORKER_LIBS)

UNIT_TESTS := $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(wildcard t/unit/*.c))
FUZZERS    := $(patsubst t/fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard t/fuzz/*.c))

test: deps build test-unit test-fuzz test-module test-asan test-worker

test-unit: $(UNIT_TESTS)
	prove -e '' $(UNIT_TESTS)

# a short run on every test; longer runs: build/fuzz/<name> -max_total_time=600
test-fuzz: $(FUZZERS)
	@for f in $(FUZZERS); do \
	    corpus=$(BUILD)/fuzz/corpus-$$(basename $$f); mkdir -p $$corpus; \
	    seeds=t/fuzz/seeds-$${f##*fuzz_}; \
	    if $$f -max_total_time=10 $$corpus $$seeds > $$f.log 2>&1; \
	    then tail -n 1 $$f.log; else cat $$f.log; exit 1; fi; \
	done

# t/0*.t, t/2*.t: the module; t/1*.t: the worker (always its ASan/UBSan
# build).  The API's tests (t/08, t/09) apply the migrations with the worker.
test-module: $(MODULE_SO) $(WORKER_ASAN)
	WA_MODULE=$(MODULE_SO) WA_WORKER=$(WORKER_ASAN) prove -I t/lib t/0*.t t/2*.t

# the same suite with the module built with ASan/UBSan and libasan
# preloaded into NGINX (and the sends through the API, t/31); leaks are
# checked when each process exits
test-asan: $(ASAN_SO) $(WORKER_ASAN) $(SIM)
	WA_MODULE=$(ASAN_SO) WA_WORKER=$(WORKER_ASAN) WA_ASAN=1 \
	    WA_GRAPH_SIM=$(SIM) prove -I t/lib t/0*.t t/2*.t t/31-send.t

# t/3*.t: sending, with the Graph API simulator
test-worker: $(WORKER_ASAN) $(MODULE_SO) $(SIM)
	WA_WORKER=$(WORKER_ASAN) WA_MODULE=$(MODULE_SO) WA_GRAPH_SIM=$(SIM) \
	    prove -I t/lib t/1*.t t/3*.t

run: deps build
	conf/run.sh $(MODULE_SO) $(WORKER) $(SIM)

bench: deps build
	bench/ingest $(MODULE_SO)

clean:
	rm -rf $(BUILD)
