/* server._arena: a bounded cache of freed 16 KiB frame data-stack chunks in front of
 * CPython's object arena allocator (PyObject_GetArenaAllocator / PyObject_SetArenaAllocator).
 *
 * Why: since CPython 3.11 every thread state -- and so every greenlet, which greenlet
 * gives a data stack of its own -- starts its frame data stack with one chunk of
 * DATA_STACK_CHUNK_SIZE (16 KiB, Python/pystate.c push_chunk) from _PyObject_VirtualAlloc,
 * which is the arena allocator; greenlet hands it back through the same allocator when the
 * greenlet finishes (greenlet's TPythonState.cpp, PythonState::did_finish).  The default
 * arena allocator is mmap/munmap, so each request greenlet costs one mmap and one munmap
 * plus the page faults of touching fresh pages.  Keeping a few freed chunks and handing
 * them out again removes those system calls; the greenlet is still brand new (its frames,
 * context and locals are not in the block: the block is raw frame-stack memory that
 * CPython initialises as it pushes frames, exactly as it does with a fresh mmap).
 *
 * What is cached: only blocks of exactly CHUNK_SIZE bytes, at most `limit` of them; any
 * other size (obmalloc's arenas, bigger data-stack chunks) and any block freed while the
 * cache is full go straight to the allocator that was installed before us.  A block is
 * only ever given back to that same previous allocator (uninstall() frees the cache
 * through it), so memory never crosses allocators.
 *
 * Why no lock: every caller of the arena allocator holds the GIL -- obmalloc (which
 * requires the GIL), _PyObject_VirtualAlloc/Free from the frame stack code of a running
 * thread state, and greenlet's did_finish/dealloc.  On CPython 3.11 there is one GIL for
 * every interpreter, so these functions never run concurrently.  Two cases where that is
 * not true are refused or not ours: a free-threaded build (Py_GIL_DISABLED) makes install()
 * raise; and on 3.12+ a subinterpreter with its own GIL could allocate concurrently -- the
 * server never creates one, and this module declares it cannot be imported into one.
 *
 * fork(): the cache is plain process memory, so a child inherits the parent's cached
 * blocks as private copy-on-write pages, which stay valid there.  The server installs the
 * cache in each worker after the fork anyway (server/accelerators.py), so the master keeps
 * CPython's allocator and no worker starts with blocks the master touched.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define CHUNK_SIZE ((size_t)16 * 1024)
#define DEFAULT_LIMIT 64
#define MAX_LIMIT 4096

static PyObjectArenaAllocator previous;
static int installed = 0;
static void *cache[MAX_LIMIT];
static Py_ssize_t cached = 0;
static Py_ssize_t limit = DEFAULT_LIMIT;

/* Counters since install() (or reset_stats()): what the tests and the bench read. */
static unsigned long long hits = 0;        /* CHUNK_SIZE allocs served from the cache */
static unsigned long long misses = 0;      /* CHUNK_SIZE allocs passed on (cache empty) */
static unsigned long long kept = 0;        /* CHUNK_SIZE frees kept in the cache */
static unsigned long long overflow = 0;    /* CHUNK_SIZE frees passed on (cache full) */
static unsigned long long passed = 0;      /* allocs and frees of any other size */

static void *
cached_alloc(void *ctx, size_t size)
{
    (void)ctx;
    if (size == CHUNK_SIZE) {
        if (cached > 0) {
            hits++;
            return cache[--cached];
        }
        misses++;
    }
    else {
        passed++;
    }
    return previous.alloc(previous.ctx, size);
}

static void
cached_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    if (size == CHUNK_SIZE && ptr != NULL) {
        if (cached < limit) {
            kept++;
            cache[cached++] = ptr;
            return;
        }
        overflow++;
    }
    else {
        passed++;
    }
    previous.free(previous.ctx, ptr, size);
}

static int
is_ours(void)
{
    PyObjectArenaAllocator current;
    PyObject_GetArenaAllocator(&current);
    return current.alloc == cached_alloc && current.free == cached_free;
}

static void
drop_cache(Py_ssize_t keep)
{
    while (cached > keep) {
        void *ptr = cache[--cached];
        previous.free(previous.ctx, ptr, CHUNK_SIZE);
    }
}

static void
reset_counters(void)
{
    hits = misses = kept = overflow = passed = 0;
}

PyDoc_STRVAR(install_doc,
"install(limit=64) -> bool\n\n"
"Put the cache in front of the current arena allocator, keeping at most `limit` freed\n"
"blocks of CHUNK_SIZE bytes. False if it is already installed (then only the limit\n"
"changes). Raises on a free-threaded build.");

static PyObject *
arena_install(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"limit", NULL};
    Py_ssize_t new_limit = DEFAULT_LIMIT;
    (void)module;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|n:install", keywords, &new_limit)) {
        return NULL;
    }
    if (new_limit < 0 || new_limit > MAX_LIMIT) {
        PyErr_Format(PyExc_ValueError, "limit must be between 0 and %d, not %zd",
                     MAX_LIMIT, new_limit);
        return NULL;
    }
#ifdef Py_GIL_DISABLED
    PyErr_SetString(PyExc_RuntimeError,
                    "the arena cache relies on the GIL; this is a free-threaded build");
    return NULL;
#else
    limit = new_limit;
    if (installed) {
        drop_cache(limit);
        Py_RETURN_FALSE;
    }
    PyObjectArenaAllocator ours = {NULL, cached_alloc, cached_free};
    PyObject_GetArenaAllocator(&previous);
    PyObject_SetArenaAllocator(&ours);
    installed = 1;
    reset_counters();
    Py_RETURN_TRUE;
#endif
}

PyDoc_STRVAR(uninstall_doc,
"uninstall() -> bool\n\n"
"Give every cached block back to the previous allocator and put that allocator back.\n"
"False if the cache was not installed. Raises RuntimeError (and changes nothing) if\n"
"someone installed another arena allocator on top of this one since.");

static PyObject *
arena_uninstall(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    if (!installed) {
        Py_RETURN_FALSE;
    }
    if (!is_ours()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "another arena allocator was installed over the cache; "
                        "uninstall that one first");
        return NULL;
    }
    drop_cache(0);
    PyObject_SetArenaAllocator(&previous);
    installed = 0;
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(installed_doc,
"installed() -> bool\n\nTrue when the cache is the arena allocator in use right now.");

static PyObject *
arena_installed(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyBool_FromLong(installed && is_ours());
}

PyDoc_STRVAR(stats_doc,
"stats() -> dict\n\n"
"limit, cached (blocks held now), and since install(): hits, misses (CHUNK_SIZE allocations\n"
"served by the cache / passed on), kept, overflow (CHUNK_SIZE frees kept / passed on because\n"
"the cache was full), passed (allocations and frees of any other size).");

static PyObject *
arena_stats(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return Py_BuildValue("{s:n,s:n,s:K,s:K,s:K,s:K,s:K}",
                         "limit", limit, "cached", cached, "hits", hits, "misses", misses,
                         "kept", kept, "overflow", overflow, "passed", passed);
}

static PyObject *
arena_reset_stats(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    reset_counters();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(call_doc,
"_alloc(size) -> int / _free(address, size)\n\n"
"Call the arena allocator in use right now, as CPython does: for the tests, which need\n"
"sizes Python code cannot ask for directly. The address is only good for _free().");

static PyObject *
arena_call_alloc(PyObject *module, PyObject *arg)
{
    (void)module;
    size_t size = PyLong_AsSize_t(arg);
    if (size == (size_t)-1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObjectArenaAllocator current;
    PyObject_GetArenaAllocator(&current);
    void *ptr = current.alloc(current.ctx, size);
    if (ptr == NULL) {
        return PyErr_NoMemory();
    }
    return PyLong_FromVoidPtr(ptr);
}

static PyObject *
arena_call_free(PyObject *module, PyObject *args)
{
    PyObject *address;
    Py_ssize_t size;
    (void)module;
    if (!PyArg_ParseTuple(args, "On:_free", &address, &size)) {
        return NULL;
    }
    void *ptr = PyLong_AsVoidPtr(address);
    if (ptr == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "address 0");
        }
        return NULL;
    }
    PyObjectArenaAllocator current;
    PyObject_GetArenaAllocator(&current);
    current.free(current.ctx, ptr, (size_t)size);
    Py_RETURN_NONE;
}

static PyMethodDef arena_methods[] = {
    {"install", (PyCFunction)(void (*)(void))arena_install, METH_VARARGS | METH_KEYWORDS,
     install_doc},
    {"uninstall", arena_uninstall, METH_NOARGS, uninstall_doc},
    {"installed", arena_installed, METH_NOARGS, installed_doc},
    {"stats", arena_stats, METH_NOARGS, stats_doc},
    {"reset_stats", arena_reset_stats, METH_NOARGS, "Zero the counters of stats()."},
    {"_alloc", arena_call_alloc, METH_O, call_doc},
    {"_free", arena_call_free, METH_VARARGS, call_doc},
    {NULL, NULL, 0, NULL},
};

static int
arena_exec(PyObject *module)
{
    if (PyModule_AddIntConstant(module, "CHUNK_SIZE", (long)CHUNK_SIZE) < 0) {
        return -1;
    }
    if (PyModule_AddIntConstant(module, "DEFAULT_LIMIT", DEFAULT_LIMIT) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "MAX_LIMIT", MAX_LIMIT);
}

static PyModuleDef_Slot arena_slots[] = {
    {Py_mod_exec, arena_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef arena_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "server._arena",
    .m_doc = "A bounded cache of freed 16 KiB frame data-stack chunks in front of the arena "
             "allocator (see server/accelerators.py).",
    .m_size = 0,
    .m_methods = arena_methods,
    .m_slots = arena_slots,
};

PyMODINIT_FUNC
PyInit__arena(void)
{
    return PyModuleDef_Init(&arena_module);
}
