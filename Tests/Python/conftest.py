"""Fixtures for the C API tests: the library (libnormcl.so), the tests' own OpenCL context
and queues (pyopencl), and NormCL runtimes on them.

The library is $NORMCL_LIBRARY when set; otherwise scripts/build-c-library.sh builds
.build/release/libnormcl.so (`swift build -c release --product normcl`, a no-op of a few
seconds when up to date; Swift is found as scripts/lib/swift-path.sh finds it) and
prints its path.

    python3 -m pip install pyopencl pytest     (numpy comes with pyopencl)
    python3 -m pytest -q Tests/Python
"""

import os
import pathlib
import subprocess

import pyopencl as cl
import pytest

import normcl_ctypes

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


def library_path():
    if os.environ.get("NORMCL_LIBRARY"):
        return os.environ["NORMCL_LIBRARY"]
    default = REPOSITORY / ".build" / "release" / "libnormcl.so"
    build = subprocess.run(
        ["bash", str(REPOSITORY / "scripts" / "build-c-library.sh")], stdout=subprocess.PIPE, text=True)
    if build.returncode == 0:
        return build.stdout.strip().splitlines()[-1]
    if default.exists():  # no Swift toolchain here, but a library built earlier
        return str(default)
    pytest.exit(f"could not build libnormcl.so (scripts/build-c-library.sh exited {build.returncode})", returncode=1)


@pytest.fixture(scope="session")
def normcl():
    library = normcl_ctypes.Library(library_path())
    assert library.lib.normcl_api_version() == 2
    return library


@pytest.fixture(scope="session")
def device():
    devices = [d for platform in cl.get_platforms() for d in platform.get_devices()]
    if not devices:
        pytest.skip("no OpenCL device")
    return devices[0]


@pytest.fixture(scope="session")
def context(device):
    return cl.Context([device])


@pytest.fixture(scope="session", params=["in-order", "out-of-order"])
def queue(request, context, device):
    """The tests' own queue, in order or out of order (each test using it runs on both)."""
    properties = 0
    if request.param == "out-of-order":
        properties = cl.command_queue_properties.OUT_OF_ORDER_EXEC_MODE_ENABLE
        if not device.queue_properties & properties:
            pytest.skip("the device has no out-of-order queues")
    return cl.CommandQueue(context, device, properties=properties)


@pytest.fixture(scope="session")
def in_order_queue(context, device):
    return cl.CommandQueue(context, device)


def _runtime(normcl, queue):
    runtime = normcl.create_runtime(queue)
    yield runtime
    queue.finish()
    assert normcl.lib.normcl_runtime_release(runtime) == normcl_ctypes.SUCCESS


@pytest.fixture(scope="session")
def runtime(normcl, queue):
    """A NormCL runtime on `queue` (both queue kinds)."""
    yield from _runtime(normcl, queue)


@pytest.fixture(scope="session")
def in_order_runtime(normcl, in_order_queue):
    """A NormCL runtime on an in-order queue, for tests that need only one kind."""
    yield from _runtime(normcl, in_order_queue)
