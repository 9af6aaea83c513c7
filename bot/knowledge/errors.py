"""The one error type of the knowledge base."""


class KnowledgeError(Exception):
    """The knowledge base is invalid; each problem names the file and the entry."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
