/* ctxlocal._speedups: Local attribute get/set/delete in C (optional).
 *
 * Why: a Python-level __getattribute__/__setattr__ costs a Python call per access, and on
 * top of it the context check (greenlet, and the asyncio task when a loop runs) — together
 * more than gevent.local.local's Cython (bench/results/local.md).  These slots do exactly
 * what ctxlocal/local.py's _context_accessors do, in the same storage, with the same keys;
 * everything that is not the fast path (a loop running, a context's first value, reserved
 * names) calls back into the Python functions configure() was given.  Without this module
 * (not built, or CTXLOCAL_PURE_PYTHON=1) the pure-Python accessors are used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *getcurrent;     /* greenlet.getcurrent */
static PyObject *running_loop;   /* asyncio.events._get_running_loop */
static PyObject *key_in_loop;    /* ctxlocal.ident.key_in_loop(loop) -> int */
static PyObject *first_value;    /* local._first_value(self, key, name, value) */
static PyObject *set_reserved;   /* local._set_reserved(self, name, value) */
static PyObject *reserved;       /* frozenset of names refused as values */
static PyObject *str_storage;    /* "__storage__" */

/* The current context's key: id(greenlet), or key_in_loop(loop) while a loop runs. */
static PyObject *
current_key(void)
{
    if (running_loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ctxlocal._speedups: configure() was not called");
        return NULL;
    }
    PyObject *loop = PyObject_CallNoArgs(running_loop);
    if (loop == NULL) {
        return NULL;
    }
    if (loop != Py_None) {
        PyObject *key = PyObject_CallOneArg(key_in_loop, loop);
        Py_DECREF(loop);
        return key;
    }
    Py_DECREF(loop);
    PyObject *greenlet = PyObject_CallNoArgs(getcurrent);
    if (greenlet == NULL) {
        return NULL;
    }
    PyObject *key = PyLong_FromVoidPtr(greenlet);  /* what id() returns */
    Py_DECREF(greenlet);
    return key;
}

/* The Local's storage dict: in its own class's __dict__ (a new reference; NULL if absent).
 * Every reference below is owned, not borrowed: computing the key can run Python code. */
static PyObject *
storage_of(PyObject *self)
{
    PyObject *storage = PyDict_GetItemWithError(Py_TYPE(self)->tp_dict, str_storage);
    return (storage != NULL && PyDict_CheckExact(storage)) ? Py_NewRef(storage) : NULL;
}

/* The current context's namespace (a new reference), NULL with no error set when there is
 * none.  With key_out, the key is handed over too (also when there is no namespace). */
static PyObject *
namespace_of(PyObject *storage, PyObject **key_out)
{
    PyObject *key = current_key();
    if (key == NULL) {
        return NULL;
    }
    PyObject *ns = PyDict_GetItemWithError(storage, key);
    if (key_out != NULL) {
        *key_out = key;
    }
    else {
        Py_DECREF(key);
    }
    return (ns != NULL && PyDict_Check(ns)) ? Py_NewRef(ns) : NULL;
}

static PyObject *
local_getattro(PyObject *self, PyObject *name)
{
    PyObject *storage = storage_of(self);
    if (storage != NULL) {
        PyObject *ns = namespace_of(storage, NULL);
        Py_DECREF(storage);
        if (ns != NULL) {
            PyObject *value = PyDict_GetItemWithError(ns, name);
            Py_XINCREF(value);
            Py_DECREF(ns);
            if (value != NULL) {
                return value;
            }
        }
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    return PyObject_GenericGetAttr(self, name);
}

static int
local_delattr(PyObject *storage, PyObject *name)
{
    PyObject *ns = namespace_of(storage, NULL);
    if (ns != NULL) {
        int found = PyDict_Contains(ns, name);
        int rc = found > 0 ? PyDict_DelItem(ns, name) : found;
        Py_DECREF(ns);
        if (found != 0) {
            return rc;
        }
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    PyErr_SetObject(PyExc_AttributeError, name);
    return -1;
}

static int
store(PyObject *self, PyObject *storage, PyObject *name, PyObject *value)
{
    if (reserved == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ctxlocal._speedups: configure() was not called");
        return -1;
    }
    int is_reserved = PySet_Contains(reserved, name);
    if (is_reserved < 0) {
        return -1;
    }
    if (is_reserved) {
        PyObject *result = PyObject_CallFunctionObjArgs(set_reserved, self, name, value, NULL);
        Py_XDECREF(result);
        return result == NULL ? -1 : 0;
    }
    PyObject *key = NULL;
    PyObject *ns = namespace_of(storage, &key);
    if (key == NULL) {
        return -1;
    }
    int rc;
    if (ns != NULL) {
        rc = PyDict_SetItem(ns, name, value);
        Py_DECREF(ns);
    }
    else if (PyErr_Occurred()) {
        rc = -1;
    }
    else {
        PyObject *result = PyObject_CallFunctionObjArgs(first_value, self, key, name, value,
                                                        NULL);
        Py_XDECREF(result);
        rc = result == NULL ? -1 : 0;
    }
    Py_DECREF(key);
    return rc;
}

static int
local_setattro(PyObject *self, PyObject *name, PyObject *value)
{
    PyObject *storage = storage_of(self);
    if (storage == NULL) {
        if (PyErr_Occurred()) {
            return -1;
        }
        return PyObject_GenericSetAttr(self, name, value);
    }
    int rc = value == NULL ? local_delattr(storage, name) : store(self, storage, name, value);
    Py_DECREF(storage);
    return rc;
}

/* __setattr__ / __delattr__ as method descriptors (of ``object``, so they apply to any
 * instance), assigned in the Local's class dict by local.py.  Not a C-level tp_setattro: with
 * one, ``object.__setattr__(local, "__ident_func__", f)`` (how werkzeug 1.x's LocalManager
 * switches identity) would be refused by CPython's "hackcheck"; through a method descriptor
 * the call costs a slot dispatch, but no Python frame.
 */
static PyObject *
setattr_method(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "__setattr__ expects 2 arguments");
        return NULL;
    }
    if (local_setattro(self, args[0], args[1]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
delattr_method(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "__delattr__ expects 1 argument");
        return NULL;
    }
    if (local_setattro(self, args[0], NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef setattr_def = {"__setattr__", (PyCFunction)(void (*)(void))setattr_method,
                                  METH_FASTCALL, NULL};
static PyMethodDef delattr_def = {"__delattr__", (PyCFunction)(void (*)(void))delattr_method,
                                  METH_FASTCALL, NULL};

/* install(cls): give a Local's own class (a heap type) the C attribute get as its slot.
 * Assigning ``cls.__getattribute__`` later (a custom ident function) replaces it as usual;
 * local.py calls install() again to return to it.
 */
static PyObject *
install(PyObject *module, PyObject *cls)
{
    if (!PyType_Check(cls) || !(((PyTypeObject *)cls)->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        PyErr_SetString(PyExc_TypeError, "install() needs a class defined in Python");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    type->tp_getattro = local_getattro;
    PyType_Modified(type);
    Py_RETURN_NONE;
}

static PyObject *
configure(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"getcurrent", "running_loop", "key_in_loop", "first_value",
                            "set_reserved", "reserved", NULL};
    PyObject *values[6];
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OOOOOO", names, &values[0], &values[1],
                                     &values[2], &values[3], &values[4], &values[5])) {
        return NULL;
    }
    if (!PyFrozenSet_Check(values[5])) {
        PyErr_SetString(PyExc_TypeError, "reserved must be a frozenset");
        return NULL;
    }
    PyObject **slots[] = {&getcurrent, &running_loop, &key_in_loop, &first_value,
                          &set_reserved, &reserved};
    for (int i = 0; i < 6; i++) {
        Py_XSETREF(*slots[i], Py_NewRef(values[i]));
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"install", install, METH_O, PyDoc_STR("install(cls): the C slots on a Local's class.")},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     PyDoc_STR("configure(*, getcurrent, running_loop, key_in_loop, first_value, "
               "set_reserved, reserved): the Python side of the slots.")},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "ctxlocal._speedups", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    str_storage = PyUnicode_InternFromString("__storage__");
    if (str_storage == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    PyObject *set_descr = PyDescr_NewMethod(&PyBaseObject_Type, &setattr_def);
    PyObject *del_descr = PyDescr_NewMethod(&PyBaseObject_Type, &delattr_def);
    if (set_descr == NULL || del_descr == NULL
            || PyModule_AddObject(module, "setattr", set_descr) < 0
            || PyModule_AddObject(module, "delattr", del_descr) < 0) {
        Py_XDECREF(set_descr);
        Py_XDECREF(del_descr);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
