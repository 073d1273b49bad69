from dataclasses import dataclass, field


@dataclass
class ContentReport:
    """What a content checker found: errors fail `check_content`, warnings are gaps to fill later."""

    summary: str = ""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
