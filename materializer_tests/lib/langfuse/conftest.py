from materializer_tests.langfuse_server.fixtures import (
    langfuse_env,
    langfuse_spec_path,
    make_langfuse_server,
)  # noqa: F401
