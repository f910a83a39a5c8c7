/* The recording half of scalewise.metrics.histogram.Histogram, in C.
 *
 * Why: recording is the one histogram operation on every request's path (the middleware's
 * batch fold, the load tester's recorder). In Python it costs ~400 ns a value on a small
 * VM, of which the interpreter is most; here it is one log() and a few stores. Everything
 * else (quantiles, merging, serialisation) stays in Python, on the same fields: the bucket
 * counts are a Python list and count/sum/min/max are plain members, so the Python methods
 * read and write them unchanged.
 *
 * The bucket of a value is computed with the same IEEE operations as the pure-Python
 * fallback (libm log, one multiply, one add, truncation), so both give identical buckets;
 * the build turns off floating-point contraction so no compiler fuses them into an FMA.
 * The layout constants come from Python through configure(): one source of truth.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <structmember.h>

static double min_value = -1.0;  /* unset until configure() */
static double max_value, inv_log_gamma, offset;
static Py_ssize_t n_buckets, overflow;

typedef struct {
    PyObject_HEAD
    PyObject *counts;  /* list of ints, one per bucket (a frozen copy holds a span) */
    long long count;
    double sum;
    double min;
    double max;
} Core;

static Py_ssize_t
bucket_of(double v)
{
    if (v < min_value) {
        return 0;
    }
    if (v > max_value) {
        return overflow;
    }
    double scaled = log(v) * inv_log_gamma;
    return (Py_ssize_t)(scaled + offset);
}

/* A live histogram's counts: a list spanning every bucket (frozen copies hold a span). */
static int
check_live(Core *self)
{
    if (!PyList_CheckExact(self->counts) || PyList_GET_SIZE(self->counts) != n_buckets) {
        PyErr_SetString(PyExc_TypeError, "this histogram cannot record (frozen or not set up)");
        return -1;
    }
    return 0;
}

/* counts[index] += 1 on a list check_live() accepted. */
static int
bump(PyObject *counts, Py_ssize_t index)
{
    PyObject *old = PyList_GET_ITEM(counts, index);
    if (!PyLong_CheckExact(old)) {  /* no __index__ call: no Python code runs mid-update */
        PyErr_SetString(PyExc_TypeError, "histogram bucket counts must be ints");
        return -1;
    }
    long long current = PyLong_AsLongLong(old);
    if (current == -1 && PyErr_Occurred()) {
        return -1;
    }
    PyObject *updated = PyLong_FromLongLong(current + 1);
    if (updated == NULL) {
        return -1;
    }
    PyList_SET_ITEM(counts, index, updated);
    Py_DECREF(old);
    return 0;
}

static int
check_configured(void)
{
    if (min_value < 0.0) {
        PyErr_SetString(PyExc_RuntimeError, "scalewise.metrics._speedups is not configured");
        return -1;
    }
    return 0;
}

static PyObject *
Core_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Core *self = (Core *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->counts = Py_NewRef(Py_None);
    self->count = 0;
    self->sum = 0.0;
    self->min = Py_HUGE_VAL;
    self->max = 0.0;
    return (PyObject *)self;
}

static int
Core_init(Core *self, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) || (kwargs != NULL && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "Histogram() takes no arguments");
        return -1;
    }
    if (check_configured() < 0) {
        return -1;
    }
    PyObject *counts = PyList_New(n_buckets);
    if (counts == NULL) {
        return -1;
    }
    PyObject *zero = PyLong_FromLong(0);
    for (Py_ssize_t i = 0; i < n_buckets; i++) {
        PyList_SET_ITEM(counts, i, Py_NewRef(zero));
    }
    Py_DECREF(zero);
    Py_SETREF(self->counts, counts);
    self->count = 0;
    self->sum = 0.0;
    self->min = Py_HUGE_VAL;
    self->max = 0.0;
    return 0;
}

static void
Core_dealloc(Core *self)
{
    Py_XDECREF(self->counts);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Core_record(Core *self, PyObject *arg)
{
    double v = PyFloat_AsDouble(arg);
    if (v == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!(v >= 0.0)) {
        return PyErr_Format(PyExc_ValueError, "a latency must be a number >= 0, got %R", arg);
    }
    if (check_live(self) < 0 || bump(self->counts, bucket_of(v)) < 0) {
        return NULL;
    }
    self->count += 1;
    self->sum += v;
    if (v > self->max) {
        self->max = v;
    }
    if (v < self->min) {
        self->min = v;
    }
    Py_RETURN_NONE;
}

static PyObject *
Core_record_all(Core *self, PyObject *arg)
{
    /* A tuple (the same one if given one): a value's __float__ cannot resize it under us. */
    PyObject *seq = PySequence_Tuple(arg);
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    double *values = PyMem_New(double, n > 0 ? n : 1);
    if (values == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    /* Convert and check every value before recording any, so bad input changes nothing.
     * Conversion may run Python code (__float__); nothing after it does. */
    double low = Py_HUGE_VAL, high = 0.0, total = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double v = PyFloat_AsDouble(PyTuple_GET_ITEM(seq, i));
        if (v == -1.0 && PyErr_Occurred()) {
            goto fail;
        }
        if (!(v >= 0.0)) {
            PyErr_Format(PyExc_ValueError, "latencies must be numbers >= 0, got %R among them",
                         PyTuple_GET_ITEM(seq, i));
            goto fail;
        }
        values[i] = v;
        total += v;
        if (v > high) {
            high = v;
        }
        if (v < low) {
            low = v;
        }
    }
    if (check_live(self) < 0) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (bump(self->counts, bucket_of(values[i])) < 0) {  /* a foreign count object */
            goto fail;
        }
    }
    PyMem_Free(values);
    Py_DECREF(seq);
    if (n) {
        self->count += n;
        self->sum += total;
        if (high > self->max) {
            self->max = high;
        }
        if (low < self->min) {
            self->min = low;
        }
    }
    Py_RETURN_NONE;

fail:
    PyMem_Free(values);
    Py_DECREF(seq);
    return NULL;
}

static PyMethodDef Core_methods[] = {
    {"record", (PyCFunction)Core_record, METH_O,
     "Add one observation (seconds, >= 0). Raises ValueError on negative or NaN."},
    {"record_all", (PyCFunction)Core_record_all, METH_O,
     "record(v) for each of values; a negative or NaN value refuses the whole batch."},
    {NULL},
};

static PyMemberDef Core_members[] = {
    {"_counts", T_OBJECT_EX, offsetof(Core, counts), 0, "bucket counts"},
    {"count", T_LONGLONG, offsetof(Core, count), 0, "observations"},
    {"sum", T_DOUBLE, offsetof(Core, sum), 0, "sum of observations (s)"},
    {"min", T_DOUBLE, offsetof(Core, min), 0, "smallest observation (inf when empty)"},
    {"max", T_DOUBLE, offsetof(Core, max), 0, "largest observation (0 when empty)"},
    {NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "scalewise.metrics._speedups.HistogramCore",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Histogram fields and recording, in C (see scalewise.metrics.histogram).",
    .tp_new = Core_new,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_methods = Core_methods,
    .tp_members = Core_members,
};

static PyObject *
configure(PyObject *module, PyObject *args)
{
    double lo, hi, scale, off;
    Py_ssize_t buckets;
    if (!PyArg_ParseTuple(args, "ddddn", &lo, &hi, &scale, &off, &buckets)) {
        return NULL;
    }
    if (!(lo > 0.0 && hi > lo && scale > 0.0 && buckets > 2)) {
        PyErr_SetString(PyExc_ValueError, "configure(): inconsistent histogram layout");
        return NULL;
    }
    min_value = lo;
    max_value = hi;
    inv_log_gamma = scale;
    offset = off;
    n_buckets = buckets;
    overflow = buckets - 1;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(min_value, max_value, inv_log_gamma, offset, buckets): the layout."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "scalewise.metrics._speedups",
    .m_doc = "C recording for scalewise's latency histogram (optional; Python is the fallback).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&CoreType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "HistogramCore", (PyObject *)&CoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
