import { Controller, Get, NotFoundException, Param, Res } from '@nestjs/common';
import { UsersService } from './users.service.js';

/** The one method of Express's `Response` used here (`Response` itself, with @types/express). */
interface TextResponse {
  type(contentType: string): unknown;
}

@Controller('users')
export class UsersController {
  constructor(private readonly users: UsersService) {}

  /** `GET /users/glyph` → Mr 'Glyph Lefkowitz' is connected under 'glyph' */
  @Get(':login')
  async greet(@Param('login') login: string, @Res({ passthrough: true }) res: TextResponse): Promise<string> {
    const user = await this.users.find(login);
    if (!user) throw new NotFoundException(`No user '${login}'`);
    // Set here rather than with @Header(), which would also label the 404's JSON as text.
    res.type('text/plain');
    return `Mr '${user.forname} ${user.name}' is connected under '${user.login}'`;
  }
}
