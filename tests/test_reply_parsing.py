"""Reply parsing from tables: a raw LLM reply -> the parsed R1 query or R2 prompts, or why it is unusable.

Pure functions (:mod:`dar_lib.models.reformulate.reply_parsing`): no model, no server.
"""

from __future__ import annotations

import pytest

from dar_lib.models.reformulate.reply_parsing import read_prompts, read_query

Q = "A big red dog on the grass"
P3 = ["Big red dog on green grass. Style: photorealistic.", "A red dog standing on a lawn. Style: photorealistic.",
      "Large red dog in a grassy field. Style: photorealistic."]

#: raw R1 reply -> (parsed query, problem or None)
R1_TABLE = [
    (Q, (Q, None)),
    ("<think>\nThe user wants one query.\n</think>\n\n" + Q, (Q, None)),
    ("1. Summary: a dog.\n2. Separation: red, big.\n3. New query: " + Q, (Q, None)),
    ("Sure! Here is the query:\n" + Q, (Q, None)),
    ("Sure! Here is the query: \u201c" + Q + "\u201d", (Q, None)),
    ("```text\n" + Q + "\n```", (Q, None)),
    ("**Final query:** a big red dog on the grass.", ("a big red dog on the grass.", None)),
    ("Query:\n\"a big red dog\"\n\nThis query keeps the confirmed details.", ("a big red dog", None)),
    ("reasoning here\n</think>\n" + Q, (Q, None)),              # lone closing tag: all before it is reasoning
    (Q + "\n<think>let me double-check", (Q, None)),             # unfinished reasoning dropped
    ("First line about the dialogue.\n" + Q + "\n\nI hope this helps!", (Q, None)),
    ("", ("", "empty query")),
    ("<think>\nforever", ("", "empty query")),
    ("Sure! Here is the query:", ("", "empty query")),
    ("Summary: the dialogue describes a dog", ("", "empty query")),
    ("1. Summarise what the dialogue says...", ("Summarise what the dialogue says...",
     "echoes the instructions ('Summarise what the dialogue says about the image'): "
     "'Summarise what the dialogue says...'")),
]

#: (raw R2 reply, k) -> (parsed prompts, problem or None)
R2_TABLE = [
    (("\n".join(P3), 3), (P3, None)),
    (("Here are 3 prompts:\n1. " + P3[0] + "\n2) " + P3[1] + "\n- " + P3[2], 3), (P3, None)),
    (("Prompt 1:\n" + P3[0] + "\nPrompt 2: " + P3[1] + "\nPrompt 3: " + P3[2], 3), (P3, None)),
    (("<think>\nthree prompts\n</think>\n1. " + P3[0] + " 2. " + P3[1] + " 3. " + P3[2], 3), (P3, None)),
    (("\n".join([P3[0], P3[0].upper(), P3[1], P3[2]]), 3), (P3, None)),   # a duplicate dropped before counting
    (("Query: a big red dog\n" + "\n".join(P3) + "\nThese prompts vary the detail.", 3), (P3, None)),
    (("\n".join(P3), 2), (P3, "expected 2 distinct prompts, got 3")),     # never trimmed
    ((P3[0], 3), ([P3[0]], "expected 3 distinct prompts, got 1")),        # never padded
    (("<think>\nI need three prompts...\n</think>", 2), ([], "expected 2 distinct prompts, got 0")),
    ((P3[0] + "\nStyle: photorealistic.", 2), ([P3[0], "Style: photorealistic."],
     "prompt 1 has nothing but the style suffix: 'Style: photorealistic.'")),
    ((P3[0] + "\n[Adjective] [Primary Subject] in [Setting], [Key Details]. Style: photorealistic.", 2),
     ([P3[0], "[Adjective] [Primary Subject] in [Setting], [Key Details]. Style: photorealistic."],
      "prompt 1 leaves the pattern's slots ['[Adjective]', '[Primary Subject]', '[Setting]', '[Key Details]'] "
      "unfilled: '[Adjective] [Primary Subject] in [Setting], [Key Details]. Style: photorealistic.'")),
    ((P3[0] + "\nVary the wording and the amount of detail between prompts.", 2),
     ([P3[0], "Vary the wording and the amount of detail between prompts."],
      "prompt 1 echoes the instructions ('Vary the wording and the amount of detail between prompts'): "
      "'Vary the wording and the amount of detail between prompts.'")),
]


@pytest.mark.parametrize("reply, expected", R1_TABLE, ids=[f"r1-{i}" for i in range(len(R1_TABLE))])
def test_r1_reply_table(reply, expected):
    assert read_query(reply) == expected


@pytest.mark.parametrize("reply_k, expected", R2_TABLE, ids=[f"r2-{i}" for i in range(len(R2_TABLE))])
def test_r2_reply_table(reply_k, expected):
    assert read_prompts(*reply_k) == expected


def test_the_protocol_reads_replies_with_the_table_functions():
    """What the chat protocol returns for a reply is exactly what the table says (one parser, one place)."""
    from dar_lib.models.reformulate import ChatReformulator, ReformulationError

    class Scripted(ChatReformulator):
        def __init__(self, replies):
            self.id, self.replies = "scripted", list(replies)

        def chat(self, messages):
            return self.replies.pop(0)

    for reply, (query, problem) in R1_TABLE:
        if problem is None:
            assert Scripted([reply]).rewrite(["a dog"]) == query
        else:
            with pytest.raises(ReformulationError) as info:
                Scripted([reply, reply]).rewrite(["a dog"])
            assert info.value.problem == problem
    for (reply, k), (prompts, problem) in R2_TABLE:
        if problem is None:
            assert Scripted([reply]).prompts("a dog", k) == prompts
        else:
            with pytest.raises(ReformulationError) as info:
                Scripted([reply, reply]).prompts("a dog", k)
            assert info.value.problem == problem
