"""The words and phrases that mean STOP, START or HELP, as data.

Read by compliance/keywords.py. Everything here is matched after
normalization: lowercase, accents stripped, apostrophes dropped ("don't" ->
"dont"), other punctuation and emoji removed, misspellings in SPELLING mapped.

Pattern syntax (one phrase = a sequence of token slots):
    word        that token
    (a|b c)     one of the alternatives (an alternative may be several tokens)
    [a|b]       optional: one of the alternatives or nothing
    *           up to two arbitrary tokens
    ^ / $       (first / last) the phrase starts / ends its clause
    {name}      a MACROS entry
A phrase is skipped when the token before it is in `not_after` (negations:
"don't stop texting me") or the token after it is in `not_before` ("stop by").

When in doubt a phrase is listed: texting someone who said stop costs more
than losing a lead (FCC 2024 order: consent may be revoked "by any reasonable
means").
"""

from __future__ import annotations

from dataclasses import dataclass

# Whole-message keywords (CTIA / carrier standard words and the FCC's list).
OPT_OUT_KEYWORDS: tuple[str, ...] = (
    "stop",
    "stop all",
    "unsubscribe",
    "cancel",
    "end",
    "quit",
    "revoke",
    "opt out",
    "remove",
    "alto",
    "baja",
    "cancelar",
    "parar",
    "detener",
    "desuscribir",
    "stop2quit",  # Spoke's default list: carriers' "Reply STOP2QUIT" prompts
)
# The opt-out keywords that are Spanish: the confirmation is sent in Spanish.
SPANISH_KEYWORDS: frozenset[str] = frozenset(
    {"alto", "baja", "cancelar", "parar", "detener", "desuscribir"}
)
# Characters that stand in for letters ("ST0P", "5TOP", "$TOP"), used only where a token
# mixes letters with them and the result is a word we know.
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "$": "s"})
# The stop sign emoji, sent alone (or with politeness), means STOP.
STOP_SIGNS = frozenset({"\U0001f6d1"})
OPT_IN_KEYWORDS: tuple[str, ...] = ("start", "unstop")
OPT_IN_WHEN_OPTED_OUT: tuple[str, ...] = ("yes",)  # otherwise an ordinary answer
HELP_KEYWORDS: tuple[str, ...] = ("help", "info", "ayuda")

# Politeness around a keyword does not change it: "STOP please!!", "stop now".
FILLERS: frozenset[str] = frozenset(
    {
        *("please", "now", "thanks", "thank", "you", "thx", "ty", "ok", "okay"),
        *("asap", "immediately", "already", "sir", "maam"),
        *("gracias", "ya", "por", "favor"),
    }
)

# A phrase right after a negation means the opposite: "don't stop texting me".
NEGATIONS = "dont not never cant cannot wont didnt doesnt shouldnt wouldnt couldnt isnt"
# A bare trailing "stop" is also no request after a modal or "to": "I can't
# stop", "when do you stop", "the bus stop".
STOP_NOT_AFTER = (
    NEGATIONS + " to will would should can could gonna must might did does do when"
    " bus truck pit full one first last next"
)

# Misspellings and abbreviations -> what they stand for (may be several words).
SPELLING: dict[str, str] = {
    # stop
    "stp": "stop",
    "sotp": "stop",
    "stpo": "stop",
    "stopp": "stop",
    "stoop": "stop",
    "stahp": "stop",
    "stopall": "stop all",
    "tsop": "stop",
    "sstop": "stop",
    "stpp": "stop",
    "srop": "stop",
    "syop": "stop",
    "dtop": "stop",
    "stlp": "stop",
    "stopo": "stop",
    "stoppp": "stop",
    "stopit": "stop it",
    "stopnow": "stop now",
    "stopplease": "stop please",
    "stoptexting": "stop texting",
    "cancle": "cancel",
    "cancell": "cancel",
    "cancl": "cancel",
    "canel": "cancel",
    "cancwl": "cancel",
    "remov": "remove",
    "removeme": "remove me",
    "quitt": "quit",
    "unsubscrib": "unsubscribe",
    "unsubscribeme": "unsubscribe me",
    "unscribe": "unsubscribe",
    "unsubscribr": "unsubscribe",
    # unsubscribe / opt out
    "unsub": "unsubscribe",
    "unsubscibe": "unsubscribe",
    "unsubcribe": "unsubscribe",
    "unsuscribe": "unsubscribe",
    "unsubscrbe": "unsubscribe",
    "unsubsribe": "unsubscribe",
    "unsbscribe": "unsubscribe",
    "unsubscribed": "unsubscribe",
    "unsuscribirme": "unsubscribe",
    "optout": "opt out",
    "optedout": "opt out",
    "donot": "do not",
    "dnt": "dont",
    "nomore": "no more",
    # texting shorthand
    "pls": "please",
    "plz": "please",
    "plez": "please",
    "pleez": "please",
    "pleaze": "please",
    "plse": "please",
    "pleas": "please",
    "plase": "please",
    "pleae": "please",
    "txt": "text",
    "tx": "text",
    "txts": "texts",
    "txting": "texting",
    "txtin": "texting",
    "textin": "texting",
    "texing": "texting",
    "textng": "texting",
    "msg": "message",
    "msgs": "messages",
    "msging": "messaging",
    "msgn": "messaging",
    "callin": "calling",
    "calln": "calling",
    "contactin": "contacting",
    "contacing": "contacting",
    "numbr": "number",
    "nmbr": "number",
    "u": "you",
    "ur": "your",
    "thru": "through",
    # Spanish shorthand
    "porfa": "por favor",
    "porfavor": "por favor",
    "xfa": "por favor",
    "xfavor": "por favor",
    "q": "que",
    "msj": "mensajes",
    "msjs": "mensajes",
    "mensages": "mensajes",
    "equibocado": "equivocado",
    "escrivan": "escriban",
    "yamen": "llamen",
    "parale": "para",
    "desuscribirme": "desuscribir",
    "desuscribanme": "desuscribir",
    "desinscribir": "desuscribir",
    "nomas": "no mas",
    "plis": "por favor",
}

# Real words one typo away from a phrase word that must stay themselves.
NOT_TYPOS: frozenset[str] = frozenset({"contract", "contracts", "falling", "selling"})

MACROS: dict[str, str] = {
    "ving": (
        "(texting|messaging|calling|contacting|emailing|sending|bothering|harassing|"
        "bugging|spamming|hitting|ringing|blowing)"
    ),
    "verb": "(text|message|call|contact|email|send|bother|harass|bug|spam|hit|ring)",
    "me": "(me|us|this number|my number|my phone|this phone|my cell|here)",
    "msgs": (
        "(texts|text|messages|message|calls|emails|spam|robocalls|notifications|alerts|"
        "text messages|contact)"
    ),
    "es_verb": (
        "(escriban|escribas|escriba|manden|mandes|envien|envies|llamen|llames|llame|"
        "contacten|contactes|molesten|molestes|texteen|textees|busquen)"
    ),
}


@dataclass(frozen=True)
class Phrase:
    """One revocation phrase (see the module doc for the syntax)."""

    pattern: str
    not_before: str = ""
    not_after: str = NEGATIONS
    language: str = "en"  # "es": the lead gets the Spanish confirmation


# "stop ..." followed by these is a visit or a pause, not a revocation.
VISIT = "by in over at into on off there for to"
# Spanish "no más de 3 pagos" is not "no more texts".
NO_MAS_OBJECT = "de que tarde temprano caro barato alto bajo grande"

REVOCATION_PHRASES: tuple[Phrase, ...] = (
    # English: stop / quit doing it
    Phrase("stop {ving} [{me}]"),
    Phrase("quit {ving} [{me}]"),
    Phrase("stop {verb} {me}"),
    Phrase("stop * {msgs}"),
    Phrase("stop (it|now|please|already|all|immediately|asap)"),
    Phrase("please stop", not_before=VISIT),
    Phrase("^ stop", not_before=VISIT, not_after=""),
    Phrase("stop $", not_after=STOP_NOT_AFTER),
    Phrase("(want|need|would like|like) (this|it|these|them|you|the texts|the messages) to stop"),
    Phrase("make (it|this|them) stop"),
    # English: do not contact me
    Phrase("(dont|do not|never) [ever] [again] {verb} {me}", not_after=""),
    Phrase("(dont|do not) [ever] {verb} $", not_after=""),
    Phrase("(dont|do not) (contact|text|call|message) (again|anymore|any more|ever)", not_after=""),
    Phrase("leave (me|us) (alone|be)"),
    Phrase("no more {msgs}", not_after=""),
    Phrase("^ [please] no more [please] $", not_after=""),
    Phrase("^ [just|please] (go away|get lost) [please] $", not_after=""),
    Phrase("(fuck off|f off|piss off|screw off|fuck you|screw you)"),
    # English: take me off the list
    Phrase("remove (me|us|my number|my phone|this number|my name|my info)"),
    Phrase("remove * from * (list|lists|database|system|contacts)"),
    Phrase("^ remove $"),
    Phrase("take (me|us|my number|this number|my name|my info) (off|out of|outta|from)"),
    Phrase("(delete|erase|lose|forget) (me|my number|this number|my info|my information)"),
    Phrase("(do not call|do not text|do not contact|dnc|no call list)", not_after=""),
    Phrase("unsubscribe"),
    Phrase("(opt|opting) [me|us] out"),
    Phrase("(revoke|revoking)"),
    Phrase("withdraw (my|all) consent"),
    Phrase("cancel (me|my number|texts|messages|calls|alerts|subscription|the texts|all texts)"),
    Phrase("cancel (my|the|these|your) (texts|messages|calls|alerts|subscription|notifications)"),
    Phrase("(stop all|end all) [of] [these|the|your] [{msgs}]"),
    # English: this is not for me
    Phrase("wrong (number|person|num|phone number|guy|girl)", not_after=""),
    Phrase("(you have|you got|youve got|youre texting|you are texting) the wrong", not_after=""),
    Phrase("(never|didnt|did not|dont remember) (signed|sign|signing) up", not_after=""),
    Phrase("(never|didnt|did not) (asked|ask|opt|opted) (for|in)", not_after=""),
    Phrase(
        "^ [im|i am|am|sorry|no|nope|no thanks|thanks but|but] [really|just|still|totally] "
        "not interested [anymore|any more|at all|thanks|thank you|please|sorry|right now] $",
        not_after="",
    ),
    Phrase("(no longer|not anymore) interested", not_after=""),
    Phrase("not interested stop", not_after=""),
    Phrase("(reported|reporting|report|this is|thats|its) [as|this as|you as|you for|it as] spam"),
    # Spanish
    Phrase(
        "no mas [{msgs}|mensajes|textos|llamadas|correos|por favor]",
        not_before=NO_MAS_OBJECT,
        language="es",
    ),
    Phrase(
        "^ [por favor] (alto|baja|cancelar|para|pare|paren) [por favor|ya] $",
        not_after="",
        language="es",
    ),
    Phrase("(dar|darme|denme|dame|deme|doy|da|das|den) de baja", not_after="", language="es"),
    Phrase("[ya] no (me|nos) {es_verb}", not_after="", language="es"),
    Phrase(
        "^ [por favor|ya] (parar|detener|detengan|detente|basta|ya basta|para ya|paren ya) "
        "[por favor|ya|gracias] $",
        not_after="",
        language="es",
    ),
    Phrase(
        "(para|paren|pare|parar|deja|dejen|detengan|deten) de (enviar|mandar|escribir|llamar|"
        "molestar|textear|enviarme|mandarme|escribirme|llamarme|molestarme)",
        not_after="",
        language="es",
    ),
    Phrase("no (me|nos) (manden|envien|escriban|llamen) mas", not_after="", language="es"),
    Phrase("cancelar [mi|la|las|los] (suscripcion|mensajes|textos|alertas)", language="es"),
    Phrase("(desuscribir|desuscribirme)", not_after="", language="es"),
    Phrase(
        "(eliminar|borrar|quitar|sacar|eliminen|borren|quiten|saquen) (mi numero|mis datos)",
        not_after="",
        language="es",
    ),
    Phrase("(no molestar|no molesten|no moleste)", not_after="", language="es"),
    Phrase("(no|nunca) (me inscribi|me suscribi|pedi esto|pedi estos mensajes)", language="es"),
    Phrase(
        "(dejen|deja|deje|dejar|dejes) de (escribirme|mandarme|enviarme|llamarme|"
        "contactarme|molestarme|escribir|mandar|enviar|llamar|molestar|textear)",
        not_after="",
        language="es",
    ),
    Phrase(
        "no (quiero|deseo) [recibir] [mas] (mensajes|llamadas|textos|correos|nada)",
        not_after="",
        language="es",
    ),
    Phrase("no quiero que me {es_verb}", not_after="", language="es"),
    Phrase(
        "(borrame|borrenme|quitame|quitenme|sacame|saquenme|eliminame|eliminenme|"
        "borren mi numero|eliminen mi numero|quiten mi numero)",
        not_after="",
        language="es",
    ),
    Phrase(
        "(numero equivocado|equivocado de numero|equivocaron de numero)",
        not_after="",
        language="es",
    ),
    Phrase("^ [ya|pero|gracias] no me interesa [ya|gracias|nada] $", not_after="", language="es"),
    Phrase("(dejame|dejenme|deja me|dejen me) en paz", not_after="", language="es"),
)

# The lead says in the same message that the texts should go on ("unsubscribe me from the
# newsletter? no I want texts"): a phrase found elsewhere in it is no revocation. A bare
# keyword (STOP) still is.
KEEP_TEXTING_PHRASES: tuple[Phrase, ...] = (
    Phrase("keep (texting|messaging|sending) [me|us]", not_after="dont not never"),
    Phrase(
        "(i|we) [still|do] (want|like|need) [the|your|these] (texts|messages)",
        not_after="",
        not_before="to",  # "I want the texts to stop"
    ),
    Phrase("(dont|do not) (want|wanna) [to] (unsubscribe|opt out|stop)", not_after=""),
)
