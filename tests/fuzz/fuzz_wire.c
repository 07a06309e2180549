/* libFuzzer harness for the OTLP wire walker (src/processor/mapping/_wire.c), built with
 * AddressSanitizer and UBSan by tests/fuzz/run.sh. It embeds CPython, since the walker builds
 * Python objects. Each input goes to both walkers; a crash, a sanitizer report, a leak of the
 * walker's own, or a SystemError (the extraction pass disagreeing with the validation pass)
 * is a finding. Seeds: tests/fuzz/seeds.py writes valid requests into a corpus directory. */
#include "../../src/processor/mapping/_wire.c"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    Py_InitializeEx(0);
    PyObject *module = PyInit__wire();
    if (module == NULL) {
        PyErr_Print();
        abort();
    }
    return 0;
}

static void run(PyObject *(*walker)(PyObject *, PyObject *), PyObject *data) {
    PyObject *out = walker(NULL, data);
    if (out == NULL) {
        PyErr_Print(); /* only MemoryError or SystemError can get here: both are bugs */
        abort();
    }
    Py_DECREF(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    PyObject *data = PyBytes_FromStringAndSize((const char *)bytes, (Py_ssize_t)size);
    if (data == NULL) abort();
    run(walk_traces, data);
    run(walk_logs, data);
    Py_DECREF(data);
    return 0;
}
