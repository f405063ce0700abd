import os

os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")

from materializer_tests.openai_server.fixtures import openai_server, openai_server_session  # noqa: E402,F401
from materializer_tests.langfuse_server.fixtures import langfuse_env, langfuse_spec_path, make_langfuse_server  # noqa: E402,F401
