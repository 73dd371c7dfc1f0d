"""Phrase patterns for what a word list misses, and for what must not be treated as abuse.

Abuse without swear words (each a category of its own):

* ``threat``: a first person about to do violence to the second person ("I'm going to stab
  you", "you're dead", "I know where you live").
* ``self_harm_encouragement``: telling someone to hurt or kill themselves ("kys", "go drink
  bleach", "you should kill yourself").
* ``harassment``: the second person with a demeaning predicate ("you are worthless", "everyone
  hates you", "what a loser").
* ``identity_attack``: a group of people by identity with a dehumanising or demeaning predicate
  ("immigrants are vermin", "women are inferior", "gays should be locked up").
* ``sexual``: sexual requests without explicit words ("send me nudes", "talk dirty to me").

Sensitive disclosures, answered with care instead of blocked (checked first):

* ``self_harm``: the person says they want to hurt or kill themselves.
* ``harassed``: the person reports being harassed, bullied or told to hurt themselves.

The patterns run on normalised text (:mod:`safety.normalise`). Violence words without a target
("I killed it at the gym", "kill the process", "this song is sick") match nothing.
"""

from __future__ import annotations

import re

from safety.normalise import normalise

_YOU = r"(?:you|u|ya|yall|y'all|your\s+(?:family|kids|mom|mum|mother|dad|wife|husband))"
_I_WILL = (
    r"(?:i(?:'m|\s+am)?\s+(?:going\s+to|gonna|gunna|about\s+to|will|'ll|wanna|want\s+to)|i'll|ima|imma|i\s+will|"
    r"we(?:'re|\s+are)\s+(?:going\s+to|gonna)|we'll|we\s+will|someone\s+(?:will|should|is\s+going\s+to))"
)
_HARM = (
    r"(?:kill|murder|stab|shoot|strangle|choke|beat|punch|hurt|break|slit|cut|rape|burn|bury|"
    r"hunt|end|destroy|torture|smash|drown|hang|behead|slap|gut|skin)"
)
_DEMEANING = (
    r"(?:worthless|pathetic|disgusting|useless|stupid|dumb|ugly|fat|retarded|trash|garbage|scum|"
    r"a\s+waste\s+of\s+(?:space|air|oxygen|life)|a\s+(?:loser|failure|joke|nobody|freak|parasite|"
    r"disgrace|mistake|worthless\s+\w+|pathetic\s+\w+)|nothing|vermin|subhuman|an?\s+idiot|an?\s+moron|"
    r"brainless|hideous|revolting|a\s+burden|unlovable|a\s+(?:pig|rat|cow|dog|animal))"
)
_GROUP = (
    r"(?:muslims|jews|christians|hindus|sikhs|atheists|gays|gay\s+(?:people|men)|lesbians|"
    r"trans\s+(?:people|women|men|folks)|transgenders?|queers|blacks|black\s+(?:people|men|women)|"
    r"whites|white\s+(?:people|men|women)|asians|arabs|indians|mexicans|latinos|hispanics|africans|"
    r"chinese|immigrants|migrants|refugees|foreigners|gypsies|roma|women|girls|men|disabled\s+people|"
    r"autistic\s+people|fat\s+people|old\s+people|poor\s+people|people\s+from\s+(?:that|this)\s+\w+|"
    r"those\s+people)"
)
_GROUP_PREDICATE = (
    r"(?:vermin|animals|subhuman|parasites|cockroaches|rats|pigs|dogs|a\s+disease|a\s+plague|a\s+cancer|"
    r"filth|savages|not\s+(?:human|people)|terrorists|criminals|thieves|rapists|perverts|freaks|trash|"
    r"garbage|inferior|less\s+intelligent|too\s+stupid|stupid|disgusting|brainwashed|evil|a\s+burden|"
    r"useless|worthless|(?:just\s+)?confused|men\s+in\s+dresses)"
)
_SHOULD_BE_DONE = (
    r"(?:deported|locked\s+up|removed|killed|banned|shot|gassed|exterminated|wiped\s+out|sterili[sz]ed|"
    r"hanged|burned)"
)
_INSULT_NOUN = (
    r"(?:idiot|moron|imbecile|loser|failure|disappointment|embarrassment|disgrace|joke|clown|creep|freak|"
    r"pig|scum|parasite|waste\s+of\s+(?:space|air|oxygen|life)|excuse\s+for\s+a)"
)
_INSULT = (
    r"(?:idiot|moron|imbecile|loser|failure|disappointment|embarrassment|disgrace|joke|clown|creep|freak|"
    r"pig|trash|garbage|scum|parasite|burden|waste\s+of\s+\w+|nobody|worthless|pathetic|useless|stupid|"
    r"dumb(?:est)?|stupidest|ugly|ugliest|hideous|disgusting|revolting|brainless|annoying|retard|excuse\s+for\s+a)"
)

_ABUSE: dict[str, list[str]] = {
    "threat": [
        rf"\b{_I_WILL}\s+(?:\w+\s+){{0,2}}{_HARM}(?:ing)?\s+{_YOU}\b",
        rf"\b{_I_WILL}\s+(?:\w+\s+){{0,2}}(?:find|get|come\s+for|hunt\s+down)\s+{_YOU}\b.*\b(?:kill|hurt|dead|pay)\b",
        rf"\b{_I_WILL}\s+(?:\w+\s+){{0,3}}{_HARM}\s+your\s+(?:\w+\s+)?"
        r"(?:legs?|neck|face|head|skull|bones|arms?|teeth|throat|house|car|kids|family)\b",
        r"\byou(?:'re|\s+are|\s+r)\s+(?:so\s+)?(?:dead|going\s+to\s+die|gonna\s+die|next)\b",
        r"\byou\s+(?:won't|will\s+not)\s+live\s+to\b",
        r"\bmake\s+sure\s+you\s+(?:never|don't|won't)\s+(?:walk|wake\s+up|breathe|see|talk)\b",
        r"\bsleep\s+with\s+one\s+eye\s+open\b",
        r"\bi\s+know\s+(?:where\s+you\s+live|your\s+address)\b",
        r"\b(?:watch|sleep\s+with\s+one\s+eye\s+open|watch\s+your\s+back)\b.*\b(?:or\s+else|coming\s+for\s+you)\b",
        r"\b(?:i\s+hope|hope)\s+(?:you|u)\s+(?:die|get\s+(?:raped|killed|shot|stabbed|cancer|hit))\b",
    ],
    "self_harm_encouragement": [
        r"\bkys\b",
        r"\b(?:go\s+)?kill\s+(?:yo)?ur\s*self\b",
        r"\b(?:go|just)\s+(?:die|drink\s+bleach|hang\s+yourself|jump\s+off)\b",
        r"\b(?:drink|eat|swallow)\s+(?:some\s+)?(?:bleach|poison)\b",
        r"\b(?:slit|cut)\s+your\s+(?:wrists|throat)\b",
        r"\bhang\s+your\s*self\b",
        r"\byou\s+should\s+(?:just\s+)?(?:die|kill\s+yourself|end\s+it|not\s+exist|off\s+yourself|disappear)\b",
        r"\b(?:nobody|no\s+one)\s+would\s+(?:miss|care\s+if)\s+(?:you|u)\b",
        r"\bthe\s+world\s+(?:would\s+be|is)\s+better\s+(?:off\s+)?without\s+(?:you|u)\b",
        r"\bdo\s+(?:us|everyone|the\s+world)\s+a\s+favou?r\s+and\s+(?:die|kill\s+yourself|disappear)\b",
        r"\bwhy\s+don'?t\s+you\s+(?:just\s+)?(?:die|end\s+it|kill\s+yourself|disappear)\b",
        r"\byou(?:'d|\s+would)\s+be\s+better\s+off\s+dead\b",
        r"\b(?:please|just)\s+(?:die|stop\s+breathing)\b",
        r"\byou\s+should\s+(?:just\s+)?stop\s+breathing\b",
    ],
    "harassment": [
        rf"\b(?:you(?:'re|\s+are|\s+r)|ur|you\s+look|you\s+sound)\s+(?!not\b|never\b|no\b)(?:\w+[,\s]+){{0,3}}?{_INSULT}",
        rf"\b(?:what|such)\s+an?\s+(?:\w+\s+){{0,2}}?{_INSULT_NOUN}(?!\s+of\b)",
        r"\byou\s+(?:\w+\s+)?(?:idiot|moron|loser|creep|freak|pig|scum)\b",
        r"\b(?:everyone|everybody|nobody|no\s+one)\s+(?:hates|likes|loves|wants|asked\s+for)\s+(?:you|u|your)\b",
        r"\b(?:shut\s+up|get\s+lost),?\s+(?:you\s+)?(?:idiot|moron|loser|freak|stupid|ugly)\b",
        r"\byou\s+(?:should\s+be\s+ashamed\s+of\s+(?:yourself|existing)|don't\s+deserve\s+to\s+(?:live|exist))\b",
        r"\byou\s+have\s+the\s+brain\s+of\s+an?\b",
        r"\byour\s+(?:face|voice|body)\s+is\s+(?:revolting|disgusting|hideous|ugly)\b",
    ],
    "identity_attack": [
        rf"\b(?:all\s+|the\s+|most\s+)?{_GROUP}\s+(?:are|r)\s+(?:all\s+|just\s+|so\s+)?{_GROUP_PREDICATE}\b",
        rf"\b(?:all\s+|the\s+)?{_GROUP}\s+should\s+(?:all\s+)?be\s+{_SHOULD_BE_DONE}\b",
        rf"\b{_GROUP}\s+should\s+not\s+be\s+allowed\s+to\b",
        rf"\b{_GROUP}\s+(?:belong|should\s+stay)\s+in\s+the\s+kitchen\b",
        rf"\b{_GROUP}\s+(?:smell|stink)\b",
        rf"\b{_GROUP}\s+(?:control|are\s+ruining)\s+(?:everything|the\s+world|this\s+country)\b",
        rf"\b{_GROUP}\s+(?:are|r)\s+(?:\w+\s+)?(?:by\s+nature|all\s+the\s+same)\b",
        r"\bsend\s+them\s+all\s+back\b",
    ],
    "sexual": [
        r"\b(?:send|show)\s+(?:me\s+)?(?:your\s+|some\s+)?(?:nudes|nude\s+pics?|naked\s+pics?)\b",
        r"\bsend\s+(?:me\s+)?(?:a\s+)?(?:video|pic|pics|photo)\s+of\s+you(?:rself)?\s+naked\b",
        r"\b(?:let'?s|wanna|want\s+to|we\s+should)\s+(?:have\s+sex|sext|hook\s+up|make\s+out|get\s+naked)\b",
        r"\btalk\s+dirty\b",
        r"\b(?:see|look\s+at|picture)\s+you\s+naked\b|\byou\s+look\s+like\s+naked\b|\blook\s+like\s+naked\b",
        r"\btake\s+(?:off\s+your\s+clothes|your\s+clothes\s+off)\b",
        r"\bspread\s+your\s+legs\b",
        r"\b(?:favou?rite|best)\s+sex\s+position\b",
        r"\bi'?m\s+(?:so\s+|really\s+)?horny\b",
        r"\bdo\s+you\s+(?:masturbate|touch\s+yourself)\b",
        r"\bdick\s+pics?\b",
        r"\bstriptease\b",
        r"\blick\s+you\b",
        r"\byour\s+fetish(?:es)?\b",
    ],
}

_CARE: dict[str, list[str]] = {
    "harassed": [
        r"\b(?:someone|somebody|people|they|he|she|a\s+\w+)\s+(?:told|tells|keeps?\s+telling|said|says)\s+me\s+to\s+"
        r"(?:kill\s+myself|kys|die|hurt\s+myself)\b",
        r"\bi(?:'m|\s+am|\s+was|\s+get|\s+got|\s+keep\s+getting)\s+(?:being\s+)?(?:bullied|harassed|threatened|stalked|"
        r"abused|doxx?ed)\b",
        r"\b(?:people|they|someone|somebody|\w+)\s+(?:keep|keeps)\s+(?:bullying|harassing|threatening|stalking|"
        r"following)\s+me\b",
        r"\b(?:harass|bully|bullies|threaten|threatens|stalk|stalks|stalking|harassing|bullying|threatening)\s+me\b",
        r"\b(?:someone|somebody|he|she|they|people)\s+(?:said|says|told\s+me)\s+(?:they|he|she)\s+(?:would|will|'ll|is\s+going\s+to|are\s+going\s+to)\s+(?:hurt|kill|find)\s+me\b",
    ],
    "self_harm": [
        r"\bi\s+(?:want|wanna|need|am\s+going|'m\s+going|am\s+gonna|'m\s+gonna|plan|might|feel\s+like\s+i\s+want)"
        r"\s+(?:to\s+)?(?:kill|hurt|cut|harm)\s+myself\b",
        r"\bi\s+(?:want|wanna)\s+to\s+die\b|\bi\s+wanna\s+die\b",
        r"\bi\s+(?:don't|do\s+not|dont)\s+want\s+to\s+(?:live|be\s+alive|exist|wake\s+up)\b",
        r"\bi(?:'m|\s+am|\s+feel)\s+(?:so\s+|really\s+)?suicidal\b",
        r"\b(?:thinking\s+(?:about|of)|thoughts\s+of)\s+(?:suicide|killing\s+myself|ending\s+(?:it|my\s+life))\b",
        r"\bi(?:'ve|\s+have)\s+been\s+(?:cutting|hurting|harming)\s+myself\b",
        r"\bi\s+(?:want|wanna|am\s+going)\s+to\s+end\s+(?:it\s+all|my\s+life|it)\b",
        r"\bno\s+reason\s+to\s+(?:live|go\s+on)\b",
        r"\bi\s+(?:want|wanna)\s+to\s+disappear\s+(?:forever|for\s+good)\b",
    ],
}


def _compile(table: dict[str, list[str]]) -> list[tuple[str, re.Pattern[str]]]:
    return [(category, re.compile(pattern)) for category, patterns in table.items() for pattern in patterns]


_ABUSE_PATTERNS = _compile(_ABUSE)
_CARE_PATTERNS = _compile(_CARE)
ABUSE_CATEGORIES = tuple(_ABUSE)
CARE_CATEGORIES = tuple(_CARE)


def _first(patterns: list[tuple[str, re.Pattern[str]]], text: str) -> str | None:
    normal = normalise(text).replace("’", "'")
    return next((category for category, pattern in patterns if pattern.search(normal)), None)


def abuse(text: str) -> str | None:
    """The category of abuse without swear words in ``text`` (threat, ...), or None."""
    return _first(_ABUSE_PATTERNS, text)


def disclosure(text: str) -> str | None:
    """``self_harm`` or ``harassed`` when the person discloses it and needs care, else None."""
    return _first(_CARE_PATTERNS, text)
