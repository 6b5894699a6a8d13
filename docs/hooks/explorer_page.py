"""mkdocs hook: write the explorer page the "Explore MobileNetV2" page embeds, at build time.

The page is generated (5 MB of data: every step of one photo), so it is not kept in the
repository: each build writes it into the site as explorer/grace_hopper.html, from the photo
and the model shipped in the package.
"""

from __future__ import annotations

from pathlib import Path

PAGE = Path("explorer") / "grace_hopper.html"


def on_post_build(config, **kwargs) -> None:  # mkdocs calls it with the config after a build
    import npmnv2
    from npmnv2.data_files import sample_image
    from npmnv2.explorer import session_for, write_page

    model = npmnv2.MobileNetV2ForImageClassification.from_pretrained("npmnv2/default")
    session = session_for(model, sample_image("grace_hopper"))
    path = Path(config["site_dir"]) / PAGE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_page(session, path, title="npmnv2 explorer: grace_hopper.jpg through npmnv2/default")
