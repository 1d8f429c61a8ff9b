"""ctypes bindings of include/normcl.h for the tests: the library's functions with their
argument types, the tensor descriptor, and tensors over pyopencl buffers.

The tests own the OpenCL context, queue and buffers (pyopencl); NormCL only sees their
handles (`int_ptr`). Events NormCL returns are wrapped as `pyopencl.Event`s, which
release them when collected.
"""

import ctypes

import numpy as np
import pyopencl as cl

SUCCESS = 0
INVALID_ARGUMENT = -1
INVALID_SHAPE = -2
SHAPE_MISMATCH = -3
UNSUPPORTED = -4
OPENCL_ERROR = -5
BUILD_ERROR = -6
OUT_OF_MEMORY = -7

MAX_RANK = 8
DTYPE = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}
CHANNELS_FIRST, CHANNELS_LAST = 0, 1
MOMENTUM_CUMULATIVE = -1.0
EPS_DEFAULT = -1.0


class Tensor(ctypes.Structure):
    """normcl_tensor."""

    _fields_ = [
        ("buffer", ctypes.c_void_p),
        ("byte_offset", ctypes.c_uint64),
        ("shape", ctypes.c_int64 * MAX_RANK),
        ("rank", ctypes.c_int32),
        ("dtype", ctypes.c_int32),
        ("layout", ctypes.c_int32),
        ("reserved", ctypes.c_int32),
    ]


assert ctypes.sizeof(Tensor) == 96 and Tensor.rank.offset == 80, "normcl_tensor layout"

class SwitchableStatistics(ctypes.Structure):
    """normcl_switchable_norm_statistics."""

    NAMES = ("save_mean", "save_invstd", "instance_mean", "instance_var", "layer_mean", "layer_var", "batch_mean",
             "batch_var")
    _fields_ = [(name, Tensor) for name in NAMES]


ACTIVATION_NONE, ACTIVATION_RELU, ACTIVATION_SILU, ACTIVATION_GELU, ACTIVATION_GELU_TANH = range(5)


class Epilogue(ctypes.Structure):
    """normcl_epilogue."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("activation", ctypes.c_int32),
        ("weight_offset", ctypes.c_float),
        ("reserved", ctypes.c_uint32),
    ]


assert ctypes.sizeof(Epilogue) == 16, "normcl_epilogue layout"


def epilogue(activation=ACTIVATION_NONE, weight_offset=0.0):
    """A normcl_epilogue pointer (NORMCL_EPILOGUE_INIT with these fields)."""
    return ctypes.pointer(Epilogue(ctypes.sizeof(Epilogue), activation, weight_offset, 0))


T = ctypes.POINTER(Tensor)
E = ctypes.POINTER(Epilogue)
S = ctypes.POINTER(SwitchableStatistics)
INT = ctypes.c_int
RT = ctypes.c_void_p
I32, F32 = ctypes.c_int32, ctypes.c_float
I64P = ctypes.POINTER(ctypes.c_int64)
EVENTS = [ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)]

# Each op's parameters before the three event parameters, as in include/normcl.h.
SIGNATURES = {
    "layer_norm_forward": [RT, T, I32, T, T, F32, T, T, T],
    "layer_norm_backward": [RT, T, T, I32, T, T, T, T, T, T],
    "rms_norm_forward": [RT, T, I32, T, F32, T, T],
    "rms_norm_backward": [RT, T, T, I32, T, T, T, T],
    "batch_norm_forward_training": [RT, T, T, T, T, T, F32, I64P, F32, T, T, T],
    "batch_norm_forward_inference": [RT, T, T, T, T, T, F32, T],
    "batch_norm_backward_training": [RT, T, T, T, T, T, T, T, T],
    "batch_norm_backward_inference": [RT, T, T, T, T, T, F32, T, T, T],
    "batch_renorm_forward": [RT, T, T, T, T, T, F32, F32, F32, I64P, F32, T, T, T, T, T],
    "batch_renorm_backward": [RT, T, T, T, T, T, T, T, T, T, T],
    "group_norm_forward": [RT, T, I32, T, T, F32, T, T, T],
    "group_norm_backward": [RT, T, T, I32, T, T, T, T, T, T],
    "instance_norm_forward": [RT, T, T, T, T, T, INT, F32, I64P, F32, T, T, T],
    "instance_norm_backward": [RT, T, T, T, T, T, T, T, T],
    "instance_norm_backward_inference": [RT, T, T, T, T, T, F32, T, T, T],
    "switchable_norm_forward": [RT, T, T, T, T, T, T, T, INT, I32, INT, F32, I64P, F32, T, S],
    "switchable_norm_backward": [RT, T, T, T, T, T, T, T, INT, I32, INT, F32, S, T, T, T, T, T],
    "layer_norm_forward_fused": [RT, T, T, T, I32, T, T, F32, E, T, T, T, T],
    "layer_norm_backward_fused": [RT, T, T, T, T, T, I32, T, T, T, T, E, T, T, T, T, T],
    "rms_norm_forward_fused": [RT, T, T, T, I32, T, T, F32, E, T, T, T],
    "rms_norm_backward_fused": [RT, T, T, T, T, T, I32, T, T, T, E, T, T, T, T, T],
    "batch_norm_forward_training_fused": [RT, T, T, T, T, T, F32, I64P, F32, T, E, T, T, T],
    "batch_norm_forward_inference_fused": [RT, T, T, T, T, T, F32, T, E, T],
    "batch_norm_backward_training_fused": [RT, T, T, T, T, T, T, T, E, T, T, T, T],
    "batch_norm_backward_inference_fused": [RT, T, T, T, T, T, T, F32, T, E, T, T, T, T],
    "batch_renorm_forward_fused": [RT, T, T, T, T, T, F32, F32, F32, I64P, F32, T, E, T, T, T, T, T],
    "batch_renorm_backward_fused": [RT, T, T, T, T, T, T, T, T, T, E, T, T, T, T],
    "group_norm_forward_fused": [RT, T, I32, T, T, F32, E, T, T, T],
    "group_norm_backward_fused": [RT, T, T, I32, T, T, T, T, E, T, T, T],
}


class NormCLError(Exception):
    def __init__(self, status, message):
        super().__init__(f"NormCL status {status}: {message}")
        self.status = status
        self.message = message


class Library:
    """libnormcl.so with typed functions."""

    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        lib = self.lib
        lib.normcl_api_version.restype = ctypes.c_int
        lib.normcl_version.restype = ctypes.c_char_p
        lib.normcl_last_error_message.restype = ctypes.c_char_p
        lib.normcl_runtime_create.argtypes = [ctypes.c_void_p] * 3 + [ctypes.POINTER(ctypes.c_void_p)]
        lib.normcl_runtime_create.restype = ctypes.c_int
        lib.normcl_runtime_release.argtypes = [ctypes.c_void_p]
        lib.normcl_runtime_release.restype = ctypes.c_int
        for name, parameters in SIGNATURES.items():
            function = getattr(lib, "normcl_" + name)
            function.argtypes = parameters + EVENTS
            function.restype = ctypes.c_int

    def last_error(self):
        return self.lib.normcl_last_error_message().decode()

    def create_runtime(self, queue):
        runtime = ctypes.c_void_p()
        status = self.lib.normcl_runtime_create(
            queue.context.int_ptr, queue.int_ptr, queue.device.int_ptr, ctypes.byref(runtime))
        if status != SUCCESS:
            raise NormCLError(status, self.last_error())
        return runtime

    def call(self, name, *arguments, wait_for=()):
        """Calls normcl_<name>(arguments..., wait list, &event); returns the event as a
        pyopencl.Event (NormCL retained it for us), or raises NormCLError."""
        waits = (ctypes.c_void_p * max(len(wait_for), 1))(*[event.int_ptr for event in wait_for])
        event = ctypes.c_void_p()
        status = getattr(self.lib, "normcl_" + name)(
            *arguments, len(wait_for), waits if wait_for else None, ctypes.byref(event))
        if status != SUCCESS:
            assert not event.value, "a failed call returned an event"
            raise NormCLError(status, self.last_error())
        assert event.value, "a successful call returned no event"
        return cl.Event.from_int_ptr(event.value, retain=False)


class DeviceArray:
    """A float32/float16 array in a pyopencl buffer, at `byte_offset` into it, in
    `layout` (channels-last: the logical (N, C, *S) array is stored as (N, *S, C))."""

    def __init__(self, queue, shape, dtype=np.float32, layout=CHANNELS_FIRST, byte_offset=0, values=None, fill=np.nan):
        self.queue, self.shape, self.dtype = queue, tuple(shape), np.dtype(dtype)
        self.layout, self.byte_offset = layout, byte_offset
        count = int(np.prod(self.shape)) if self.shape else 1
        size = byte_offset + count * self.dtype.itemsize
        self.buffer = cl.Buffer(queue.context, cl.mem_flags.READ_WRITE, max(size, 1)) if count else None
        self.write_event = None
        if count:
            self.write(np.full(self.shape, fill) if values is None else values)

    def _memory_order(self, values):
        values = np.asarray(values, dtype=self.dtype).reshape(self.shape)
        if self.layout == CHANNELS_LAST and len(self.shape) >= 3:
            values = np.moveaxis(values, 1, -1)
        return np.ascontiguousarray(values)

    def write(self, values, blocking=True):
        """Writes `values` (logical layout); a non-blocking write's event is `write_event`."""
        self._host = self._memory_order(values)
        self.write_event = cl.enqueue_copy(
            self.queue, self.buffer, self._host, dst_offset=self.byte_offset, is_blocking=blocking)
        return self.write_event

    def read(self, wait_for=()):
        """The values (logical layout, float64) after `wait_for`."""
        if self.buffer is None:
            return np.zeros(self.shape)
        memory_shape = self.shape
        if self.layout == CHANNELS_LAST and len(self.shape) >= 3:
            memory_shape = (self.shape[0],) + self.shape[2:] + (self.shape[1],)
        host = np.empty(memory_shape, dtype=self.dtype)
        cl.enqueue_copy(self.queue, host, self.buffer, src_offset=self.byte_offset, wait_for=list(wait_for),
                        is_blocking=True)
        if memory_shape != self.shape:
            host = np.moveaxis(host, -1, 1)
        return host.astype(np.float64)

    @property
    def desc(self):
        tensor = Tensor()
        tensor.buffer = self.buffer.int_ptr if self.buffer is not None else None
        tensor.byte_offset = self.byte_offset
        tensor.rank = len(self.shape)
        for index, dim in enumerate(self.shape):
            tensor.shape[index] = dim
        tensor.dtype = DTYPE[self.dtype]
        tensor.layout = self.layout
        return ctypes.pointer(tensor)


def switchable_statistics(arrays):
    """A normcl_switchable_norm_statistics pointer: `arrays` maps field names to
    DeviceArrays; the other fields are absent."""
    statistics = SwitchableStatistics()
    for name, array in arrays.items():
        setattr(statistics, name, array.desc.contents)
    return ctypes.pointer(statistics)


def desc(array):
    """The descriptor pointer of a DeviceArray, or NULL for None."""
    return None if array is None else array.desc
