/**
 * The tokens of the .qzo language (grammar/qzo.ebnf is the readable grammar).
 *
 * Hard keywords can never be names. Soft keywords (the words of format
 * declarations, such as `scale` or `in`) are also in the `Name` category, so a
 * model can still call a config entry `block` or index a shape by `in`.
 */
import { createToken, Lexer, type TokenType } from "chevrotain";

export const Name = createToken({ name: "Name", pattern: Lexer.NA });
export const Identifier = createToken({
  name: "Identifier",
  pattern: /[A-Za-z_][A-Za-z0-9_]*/,
  categories: [Name],
});

function keyword(word: string, soft: boolean): TokenType {
  return createToken({
    name: word.charAt(0).toUpperCase() + word.slice(1),
    pattern: new RegExp(`${word}(?![A-Za-z0-9_])`),
    longer_alt: Identifier,
    categories: soft ? [Name] : [],
  });
}

const hard = (w: string) => keyword(w, false);
const soft = (w: string) => keyword(w, true);

export const Import = hard("import");
export const Format = hard("format");
export const Model = hard("model");
export const Config = hard("config");
export const Param = hard("param");
export const For = hard("for");
export const Graph = hard("graph");
export const Loss = hard("loss");
export const Return = hard("return");
export const Train = hard("train");
export const Or = hard("or");
export const True = hard("true");
export const False = hard("false");
export const Relative = hard("relative");
export const Absolute = hard("absolute");

export const In = soft("in");
export const Code = soft("code");
export const Offset = soft("offset");
export const Lookup = soft("lookup");
export const Block = soft("block");
export const Along = soft("along");
export const Scale = soft("scale");
export const Per = soft("per");
export const Zero = soft("zero");
export const Adjust = soft("adjust");
export const Min = soft("min");
export const Codebook = soft("codebook");
export const Additive = soft("additive");
export const Layout = soft("layout");
export const Record = soft("record");
export const Tensors = soft("tensors");
export const At = soft("at");
export const Bit = soft("bit");

export const NumberTok = createToken({
  name: "Number",
  pattern: /(?:\d+\.\d+|\d+)(?:[eE][+-]?\d+)?/,
});
export const StringTok = createToken({ name: "String", pattern: /"(?:[^"\\\n]|\\.)*"/ });
/** A string without its closing quote: one token, so that the rest of the line is not lexed as code. */
export const UnterminatedString = createToken({ name: "UnterminatedString", pattern: /"(?:[^"\\\n]|\\.)*/ });

export const Arrow = createToken({ name: "Arrow", pattern: /->/ });
export const DotDot = createToken({ name: "DotDot", pattern: /\.\./ });
export const LBrace = createToken({ name: "LBrace", pattern: /\{/, label: "'{'" });
export const RBrace = createToken({ name: "RBrace", pattern: /\}/, label: "'}'" });
export const LParen = createToken({ name: "LParen", pattern: /\(/, label: "'('" });
export const RParen = createToken({ name: "RParen", pattern: /\)/, label: "')'" });
export const LBracket = createToken({ name: "LBracket", pattern: /\[/, label: "'['" });
export const RBracket = createToken({ name: "RBracket", pattern: /\]/, label: "']'" });
export const Comma = createToken({ name: "Comma", pattern: /,/, label: "','" });
export const Colon = createToken({ name: "Colon", pattern: /:/, label: "':'" });
export const Equals = createToken({ name: "Equals", pattern: /=/, label: "'='" });
export const Pipe = createToken({ name: "Pipe", pattern: /\|/, label: "'|'" });
export const Plus = createToken({ name: "Plus", pattern: /\+/, label: "'+'" });
export const Minus = createToken({ name: "Minus", pattern: /-/, label: "'-'" });
export const Star = createToken({ name: "Star", pattern: /\*/, label: "'*'" });
export const Slash = createToken({ name: "Slash", pattern: /\//, label: "'/'" });
export const Percent = createToken({ name: "Percent", pattern: /%/, label: "'%'" });

export const Comment = createToken({ name: "Comment", pattern: /#[^\n]*/, group: "comments" });
export const WhiteSpace = createToken({
  name: "WhiteSpace",
  pattern: /[ \t\r\n]+/,
  group: Lexer.SKIPPED,
});

export const hardKeywords = [
  Import, Format, Model, Config, Param, For, Graph, Loss, Return, Train, Or, True, False,
  Relative, Absolute,
];
export const softKeywords = [
  In, Code, Offset, Lookup, Block, Along, Scale, Per, Zero, Adjust, Min, Codebook, Additive,
  Layout, Record, Tensors, At, Bit,
];

export const allTokens: TokenType[] = [
  WhiteSpace,
  Comment,
  Arrow,
  DotDot,
  ...hardKeywords,
  ...softKeywords,
  Identifier,
  Name,
  NumberTok,
  StringTok,
  UnterminatedString,
  LBrace, RBrace, LParen, RParen, LBracket, RBracket,
  Comma, Colon, Equals, Pipe, Plus, Minus, Star, Slash, Percent,
];

export const qzoLexer = new Lexer(allTokens, { positionTracking: "onlyOffset", ensureOptimizations: false });
