"""Every prompt text membudget sends to a model, in one place. Results record the text they used."""

MATH = "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."

MULTIPLE_CHOICE = (
    "{question}\n\n"
    "A) {A}\nB) {B}\nC) {C}\nD) {D}\n\n"
    "Please reason step by step, and give the letter of the correct option within \\boxed{{}}, "
    "for example \\boxed{{A}}."
)

# Forced at the token budget (budget forcing, s1 style), after the thinking is closed.
MATH_ANSWER_PREFIX = "\n\n**Final Answer**\n\\boxed{"
CHOICE_ANSWER_PREFIX = "\n\n**Final Answer**\n\\boxed{"
