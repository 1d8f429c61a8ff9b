/* The MPI C API for Swift.
 *
 * Open MPI defines its predefined handles as macros over the addresses of globals
 * (`#define MPI_COMM_WORLD OMPI_PREDEFINED_GLOBAL(MPI_Comm, ompi_mpi_comm_world)`), and
 * some constants as casts (`MPI_STATUS_IGNORE`, `MPI_IN_PLACE`): Swift imports neither,
 * so each has a `static inline` accessor here, named after it in lower case with a
 * `normcl_` prefix. Plain integer macros and enums (MPI_SUCCESS, MPI_THREAD_FUNNELED)
 * import as they are; they have accessors too, so Swift code need not depend on how
 * an implementation spells them. */
#ifndef NORMCL_CMPI_SHIM_H
#define NORMCL_CMPI_SHIM_H

/* No C++ bindings: this header is imported as C. */
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>

/* Communicators. */
static inline MPI_Comm normcl_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm normcl_mpi_comm_self(void) { return MPI_COMM_SELF; }
static inline MPI_Comm normcl_mpi_comm_null(void) { return MPI_COMM_NULL; }

/* Datatypes. */
static inline MPI_Datatype normcl_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype normcl_mpi_int(void) { return MPI_INT; }
static inline MPI_Datatype normcl_mpi_char(void) { return MPI_CHAR; }

/* Reduction operations. */
static inline MPI_Op normcl_mpi_min(void) { return MPI_MIN; }
static inline MPI_Op normcl_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op normcl_mpi_sum(void) { return MPI_SUM; }

/* Requests, statuses, buffers. */
static inline MPI_Request normcl_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *normcl_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline void *normcl_mpi_in_place(void) { return MPI_IN_PLACE; }

/* Error handling. */
static inline MPI_Errhandler normcl_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int normcl_mpi_success(void) { return MPI_SUCCESS; }
static inline int normcl_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }

/* Thread support levels (MPI_Init_thread). */
static inline int normcl_mpi_thread_single(void) { return MPI_THREAD_SINGLE; }
static inline int normcl_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int normcl_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int normcl_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }

#endif
