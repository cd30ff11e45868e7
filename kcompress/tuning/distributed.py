"""Spreading a search over processes: Keras Tuner's chief and workers.

``tune --chief HOST:PORT`` serves the search's oracle over gRPC and ``tune --worker HOST:PORT``
asks it for trials; :func:`tuning_role` maps the flags onto Keras Tuner's ``KERASTUNER_TUNER_ID``
/ ``KERASTUNER_ORACLE_IP`` / ``KERASTUNER_ORACLE_PORT``. Keras Tuner's own chief loop never
returns; :func:`serve_oracle` returns as soon as every trial has ended and every worker has been
told to stop, so the chief can write the report.
"""
import contextlib
import os
import time
from concurrent import futures

from kcompress.errors import require

WORKER_RPC_TIMEOUT_S = 300  # a worker gives up on an unreachable chief after this long (Keras Tuner: 1 h)
ENV_KEYS = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


def parse_address(text, flag):
    """``HOST:PORT`` -> ``(host, port)`` (exit 2 with the reason otherwise)."""
    host, sep, port = str(text).rpartition(":")
    require(sep and host and port.isdigit() and 0 < int(port) < 65536,
            f"{flag} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8000")
    return host, int(port)


@contextlib.contextmanager
def tuning_role(chief=None, worker=None, tuner_id=None):
    """Set Keras Tuner's distribution variables for the block (and restore them after)."""
    require(not (chief and worker), "--chief and --worker exclude each other")
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    if chief or worker:
        host, port = parse_address(chief or worker, "--chief" if chief else "--worker")
        name = "chief" if chief else (tuner_id or f"worker-{os.getpid()}")
        require(chief or "chief" not in name, f"--tuner-id {name!r}: a worker's id must not contain 'chief'")
        os.environ.update(KERASTUNER_TUNER_ID=name, KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=str(port))
        from keras_tuner.src.distribute import oracle_client  # after the environment it reads is set

        oracle_client.TIMEOUT = WORKER_RPC_TIMEOUT_S
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def is_tuning_chief():
    from keras_tuner.src.distribute import utils  # Keras Tuner loads TensorFlow

    return utils.is_chief_oracle()


def is_tuning_worker():
    from keras_tuner.src.distribute import utils  # Keras Tuner loads TensorFlow

    return utils.has_chief_oracle() and not utils.is_chief_oracle()


def serve_oracle(oracle, poll_s=0.2):
    """Serve ``oracle`` to the workers until the search is over (Keras Tuner's servicer, our loop)."""
    import grpc  # only a distributed search needs it
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief  # Keras Tuner loads TensorFlow

    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    require(bound, f"--chief {address}: cannot listen there (port in use?)")
    server.start()
    print(f"chief: serving the search on {address}", flush=True)
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll_s)
    finally:
        server.stop(grace=2).wait()
